"""Command line: `tf-transformer SUBCOMMAND`. Each subcommand parses its arguments and
calls one library function; no logic lives here."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from tf_transformer import config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-transformer",
        description="Train, evaluate, decode and export Transformer translation models.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_build_vocab(subcommands)
    _add_train(subcommands)
    return parser


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --set SECTION.KEY=VALUE, read by `config.load`."""
    parser.add_argument(
        "--config", action="append", default=[], help="YAML config file (repeatable; later wins)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, e.g. train.steps=200 (repeatable)",
    )


def _add_train(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "train",
        help="train a model (default: tiny model on the built-in synthetic corpus)",
        description="Trains, validates and scores a model, writing everything to a run "
        "directory. Rerunning the same command resumes from the last backup.",
    )
    _add_config_arguments(parser)
    parser.add_argument(
        "--output-dir",
        help="run directory (default: runs/NAME, NAME the last config file's stem or 'default')",
    )
    parser.add_argument(
        "--export-dir",
        default="saved_models",
        help="where the final model is exported as NAME.keras (default: saved_models)",
    )
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    experiment = config.load(args.config, args.set)  # config errors before the slow import
    from tf_transformer.training import fit  # imports TensorFlow: only when it runs

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = Path(args.config[-1]).stem if args.config else "default"
    fit.train(
        experiment,
        output_dir=args.output_dir or Path("runs") / name,
        export_path=Path(args.export_dir) / f"{name}.keras",
    )


def _add_build_vocab(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "build-vocab",
        help="train the SentencePiece vocabulary of a corpus",
        description="Trains a SentencePiece model (PAD=0 UNK=1 BOS=2 EOS=3) on the training "
        "split of the corpus the data config names. Flags override --config / --set.",
    )
    _add_config_arguments(parser)
    parser.add_argument(
        "--source", choices=("synthetic", "tfds", "files", "multi30k"), help="corpus kind"
    )
    parser.add_argument("--tfds-name", help='TFDS dataset, e.g. "wmt14_translate/de-en"')
    parser.add_argument("--data-dir", help="corpus directory (source files or multi30k)")
    parser.add_argument("--source-language", help='e.g. "en": a TFDS key or file suffix')
    parser.add_argument("--target-language", help='e.g. "de"')
    parser.add_argument("--vocab-size", type=int, help="pieces, special ids included")
    parser.add_argument(
        "--model-type", dest="vocab_model_type", choices=("unigram", "bpe"), help="algorithm"
    )
    parser.add_argument(
        "--separate-vocabularies",
        dest="joint_vocabulary",
        action="store_false",
        default=None,
        help="one vocabulary per language instead of a joint one",
    )
    parser.add_argument(
        "--vocabulary-prefix", help="writes PREFIX.model (PREFIX.LANG.model per language)"
    )
    parser.set_defaults(run=_run_build_vocab)


def _data_config(args: argparse.Namespace) -> config.DataConfig:
    """The data config of --config / --set, with the subcommand's flags applied on top."""
    field_names = {field.name for field in dataclasses.fields(config.DataConfig)}
    flags = {
        name: value
        for name, value in vars(args).items()
        if name in field_names and value is not None
    }
    return dataclasses.replace(config.load(args.config, args.set).data, **flags)


def _run_build_vocab(args: argparse.Namespace) -> None:
    from tf_transformer.data import tokenizer  # imports TensorFlow: only when it runs

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tokenizer.build_vocabulary(_data_config(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"tf-transformer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
