"""Command line: `tf-transformer SUBCOMMAND`. Each subcommand parses its arguments and
calls one library function; no logic lives here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import posixpath
import re
import sys
import threading
import time

from tf_transformer import config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-transformer",
        description="Train, evaluate, decode and export Transformer models: translation "
        "(encoder-decoder) and language models (decoder-only).",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's native start-up log lines (CUDA, oneDNN, XLA, CPU features)",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_build_vocab(subcommands)
    _add_train(subcommands)
    _add_pretrain(subcommands)
    _add_translate(subcommands)
    _add_generate(subcommands)
    _add_classify(subcommands)
    _add_evaluate(subcommands)
    _add_export(subcommands)
    _add_benchmark(subcommands)
    return parser


def _add_export(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "export",
        help="export a trained run as a SavedModel for TF Serving, or for CTranslate2",
        description="Writes OUTPUT/N (the next version number) as a SavedModel that takes "
        "and returns strings. A translation run's signatures: serving_default, "
        "translate_nbest, sample and sample_with_seed; a language model's: serving_default "
        "and generate (prompts in, prompt + continuation out). Loading it needs only "
        "tensorflow and tensorflow-text. Flags override the run's decode settings. "
        "--format ctranslate2 writes a translation run as the CTranslate2 model "
        "directory OUTPUT instead, its SentencePiece model beside it (search settings "
        "are CTranslate2's, at translation time).",
    )
    parser.add_argument(
        "--format",
        choices=("savedmodel", "ctranslate2"),
        default="savedmodel",
        help="savedmodel (default) or ctranslate2 (needs the ctranslate2 package)",
    )
    parser.add_argument(
        "--quantization",
        help="weight type (default: the weights' float32): for ctranslate2 one of its "
        "types, e.g. int8; for a translation SavedModel int8 (Keras int8 weights)",
    )
    parser.add_argument(
        "--xla",
        action="store_true",
        help="translation SavedModel: greedy and beam search compiled with XLA (TF Serving "
        "runs it only with --xla_cpu_compilation_enabled=true)",
    )
    # Sampling settings other than the seed are inputs of the sample signature.
    _add_decode_arguments(parser, sampling=False)
    parser.add_argument("--output", required=True, help="model directory, e.g. saved_models/NAME")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1,
        help="translation: samples per sentence of the sample signatures",
    )
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    if args.xla and args.format != "savedmodel":
        raise ValueError("--xla is for --format savedmodel")
    if args.format == "ctranslate2":
        _run_ctranslate2_export(args)
        return
    if args.quantization not in (None, "int8"):
        raise ValueError(f"--quantization for a SavedModel must be int8, got {args.quantization}")
    decode_config = _decode_config(args)  # config errors before the slow import
    from tf_transformer.serving.export import export_run  # imports TensorFlow

    started = time.perf_counter()
    version_dir = export_run(
        args.model,
        args.output,
        decode_config,
        args.num_samples,
        jit_compile=args.xla,
        quantization=args.quantization,
    )
    print(f"Exported {args.model} to {version_dir} in {time.perf_counter() - started:.0f} s")


def _run_ctranslate2_export(args: argparse.Namespace) -> None:
    from tf_transformer.serving.ctranslate2_export import export_ctranslate2  # imports TF

    started = time.perf_counter()
    output_dir = export_ctranslate2(args.model, args.output, args.quantization)
    print(
        f"Converted {args.model} to the CTranslate2 model {output_dir} "
        f"in {time.perf_counter() - started:.0f} s"
    )


def _add_benchmark(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser("benchmark", help="speed measurements that print JSON")
    kinds = parser.add_subparsers(dest="benchmark", required=True, metavar="KIND")
    decode = kinds.add_parser(
        "decode",
        help="translation speed of a trained run",
        description="Translates --src twice (the first pass compiles) and prints "
        "sentences/s and target tokens/s of the second as one JSON line.",
    )
    _add_decode_arguments(decode)
    decode.add_argument("--src", required=True, help="source sentences, one per line")
    decode.add_argument("--limit", type=int, help="use only the first N lines")
    decode.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="re-run the decoder over the whole prefix at every step (the naive decoder)",
    )
    decode.add_argument(
        "--no-xla",
        dest="jit_compile",
        action="store_false",
        help="run the search as a plain tf.function instead of compiling it with XLA",
    )
    decode.add_argument("--json", action="store_true", help="JSON output (the only format)")
    decode.set_defaults(run=_run_benchmark_decode)

    train = kinds.add_parser(
        "train",
        help="training throughput on fixed-shape random batches",
        description="Trains a Seq2SeqTransformer of the given shape on one repeated random "
        "batch (3 untimed steps compile it) and prints tokens/s (source + target), "
        "seconds per step, parameters and matmul GFLOP/s as one JSON line.",
    )
    add_shape_arguments(train)
    train.add_argument("--steps", type=int, default=20, help="timed steps")
    train.add_argument(
        "--no-xla", dest="jit_compile", action="store_false", help="train without XLA"
    )
    train.add_argument("--json", action="store_true", help="JSON output (the only format)")
    train.set_defaults(run=_run_benchmark_train)

    serve = kinds.add_parser(
        "serve",
        help="load time, latency and throughput of an exported SavedModel",
        description="Loads the SavedModel, then times single-sentence calls of "
        "serving_default (p50 / p95 latency) and batches of --batch-size sentences "
        "(sentences/s); prints one JSON line.",
    )
    serve.add_argument("--model", required=True, help="SavedModel version directory")
    serve.add_argument("--src", help="sentences, one per line (default: built-in corpus)")
    serve.add_argument("--batch-size", type=int, default=32, help="sentences per batch call")
    serve.add_argument("--json", action="store_true", help="JSON output (the only format)")
    serve.set_defaults(run=_run_benchmark_serve)


def _run_benchmark_decode(args: argparse.Namespace) -> None:
    from tf_transformer.decoding.benchmark import benchmark_decode  # imports TensorFlow

    _print_results(
        benchmark_decode(
            args.model,
            args.src,
            _decode_config(args),
            use_cache=args.use_cache,
            jit_compile=args.jit_compile,
            limit=args.limit,
        ),
        as_json=True,
    )


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and batch shape flags of the training benchmarks (`shape_config`)."""
    parser.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size")
    parser.add_argument("--d-model", type=int, default=256, help="model width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--ffn", type=int, default=1024, help="feed-forward width")
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--batch", type=int, default=64, help="sentences per batch")
    parser.add_argument("--src-len", type=int, default=32, help="source tokens per sentence")
    parser.add_argument("--tgt-len", type=int, default=32, help="target tokens per sentence")


def shape_config(args: argparse.Namespace) -> config.ModelConfig:
    """The architecture that `add_shape_arguments`' flags describe."""
    return config.ModelConfig(
        source_vocab_size=args.vocab,
        target_vocab_size=args.vocab,
        d_model=args.d_model,
        num_heads=args.heads,
        ffn_dim=args.ffn,
        num_encoder_layers=args.layers,
        num_decoder_layers=args.layers,
        max_length=max(args.src_len, args.tgt_len),
    )


def _run_benchmark_train(args: argparse.Namespace) -> None:
    model_config = shape_config(args)
    from tf_transformer.training.benchmark import benchmark_train  # imports TensorFlow

    result = benchmark_train(
        model_config,
        args.batch,
        args.src_len,
        args.tgt_len,
        args.steps,
        config.TrainConfig(jit_compile=args.jit_compile),
    )
    _print_results(result, as_json=True)


def _run_benchmark_serve(args: argparse.Namespace) -> None:
    from tf_transformer.serving.benchmark import benchmark_serve  # imports TensorFlow

    _print_results(benchmark_serve(args.model, args.src, batch_size=args.batch_size), True)


def _add_decode_arguments(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    """--model and the flags that override the run's `decode` config section; without
    `sampling`, only the search flags and the seed."""
    parser.add_argument("--model", required=True, help="training run directory")
    parser.add_argument("--beam-size", type=int, help="beams per sentence (1: greedy)")
    parser.add_argument("--length-penalty", type=float, help="GNMT alpha (0: none)")
    parser.add_argument("--max-length", type=int, help="absolute output length limit")
    parser.add_argument(
        "--stop-rule",
        choices=("beams_finished", "exact"),
        help="beam search: stop a sentence once beam_size hypotheses finished, or on "
        "the exact bound",
    )
    parser.add_argument("--seed", type=int, help="sampling seed")
    if not sampling:
        return
    parser.add_argument("--sample", action="store_true", default=None, help="sample tokens")
    parser.add_argument("--temperature", type=float, help="sampling temperature")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="nucleus sampling probability mass")
    parser.add_argument("--num-return-sequences", type=int, help="hypotheses per sentence")
    parser.add_argument("--batch-size", type=int, help="sentences per generation call")


def _with_flags(section, args: argparse.Namespace):
    """`section` (a config dataclass) with the flags of `args` that name its fields and
    were given applied on top."""
    field_names = {field.name for field in dataclasses.fields(section)}
    flags = {
        name: value
        for name, value in vars(args).items()
        if name in field_names and value is not None
    }
    return dataclasses.replace(section, **flags)


def _decode_config(args: argparse.Namespace) -> config.DecodeConfig:
    """The run's `decode` section with the decode flags applied on top."""
    return _with_flags(config.load_run(args.model).decode, args)


def _translator(args: argparse.Namespace):
    from tf_transformer.decoding.translator import Translator  # imports TensorFlow

    return Translator.from_run(args.model, _decode_config(args))


# The `generate` flags that `Generator.settings` applies (and checks) together.
GENERATION_SETTINGS = ("temperature", "top_k", "top_p", "beam_size", "num_return_sequences")


def _generator(args: argparse.Namespace):
    """The run's generator, its decode config with the flags other than
    GENERATION_SETTINGS applied."""
    from tf_transformer.decoding.generator import Generator  # imports TensorFlow

    flags = argparse.Namespace(
        **{name: value for name, value in vars(args).items() if name not in GENERATION_SETTINGS}
    )
    return Generator.from_run(args.model, _decode_config(flags))


def _add_generate(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "generate",
        help="continue prompts with a trained language model",
        description="Continues each PROMPT (or each line of standard input when none is "
        "given) and prints one output per line: the prompt followed by its continuation. "
        "With --num-return-sequences N, N lines 'score<TAB>text' per prompt, best first. "
        "Giving --temperature, --top-k or --top-p samples; --beam-size K > 1 searches; "
        "else the run's decode settings apply (greedy unless decode.sample). An empty "
        "prompt generates from the start of a sentence; a prompt longer than the model's "
        "context is truncated from the left with a warning.",
    )
    _add_decode_arguments(parser)
    parser.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts (default: stdin)")
    parser.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> None:
    generator = _generator(args)
    prompts = _arguments_or_stdin(args.prompts)
    settings = {name: getattr(args, name) for name in GENERATION_SETTINGS}
    for hypotheses in generator.generate_with_scores(prompts, **settings):
        if len(hypotheses) == 1:
            print(hypotheses[0].text)
        else:
            print("".join(f"{h.score:.4f}\t{h.text}\n" for h in hypotheses), end="")


def _add_classify(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "classify",
        help="label texts with a trained classifier",
        description="Labels each TEXT (or each line of standard input when none is given) "
        "and prints one 'label<TAB>probability' line per text.",
    )
    parser.add_argument("--model", required=True, help="classification run directory")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts (default: stdin)")
    parser.set_defaults(run=_run_classify)


def _run_classify(args: argparse.Namespace) -> None:
    from tf_transformer.decoding.classifier import TextClassifier  # imports TensorFlow

    classifier = TextClassifier.from_run(args.model)
    texts = _arguments_or_stdin(args.texts)
    for prediction in classifier.classify(texts):
        print(f"{prediction.label}\t{prediction.probability:.4f}")


def _add_pretrain(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "pretrain",
        help="pretrain an encoder-decoder on monolingual text (task denoising)",
        description="Pretrains an encoder-decoder by span corruption or text infilling "
        "(the config's denoising section) on monolingual text, writing a run directory "
        "that `train --init-from` fine-tunes. Rerunning the same command resumes.",
    )
    _add_config_arguments(parser)
    parser.add_argument("--output-dir", help="run directory (default: runs/NAME)")
    parser.set_defaults(run=_run_pretrain, export_dir="saved_models", init_from=None)


def _run_pretrain(args: argparse.Namespace) -> None:
    task = config.load(args.config, args.set).task
    if task not in ("translation", "denoising"):  # translation: no task key given
        raise ValueError(f"pretrain trains task denoising; the config names task {task!r}")
    args.set = ["task=denoising", *args.set]
    _run_train(args)


def _arguments_or_stdin(values: list[str]) -> list[str]:
    """`values` given on the command line, else the lines of standard input."""
    return values or [line.rstrip("\r\n") for line in sys.stdin]


def _add_translate(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "translate",
        help="translate lines of text with a trained run",
        description="Translates one sentence per line from --input (default stdin) to "
        "--output (default stdout), line for line; empty lines stay empty. With "
        "--num-return-sequences N, writes N tab-separated 'score<TAB>translation' lines "
        "per input line, best first.",
    )
    _add_decode_arguments(parser)
    parser.add_argument("--input", help="file to translate (default: standard input)")
    parser.add_argument("--output", help="file to write (default: standard output)")
    parser.set_defaults(run=_run_translate)


def _run_translate(args: argparse.Namespace) -> None:
    from tf_transformer.decoding.translator import translate_file  # imports TensorFlow

    translate_file(_translator(args), args.input, args.output)


def _add_evaluate(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "evaluate",
        help="sacreBLEU and chrF of a translation run, perplexity of a language model, or a "
        "classifier's accuracy",
        description="Translation: translates --src and scores it against --ref with "
        "sacreBLEU (13a, cased) and chrF; also the model's perplexity on the pair of files. "
        "Language model: its perplexity on the lines of --src, per token and per word "
        "(whitespace-separated words, plus one EOS per line). Classifier: accuracy and "
        "macro-F1 on --src, a text<TAB>label file.",
    )
    _add_decode_arguments(parser)
    parser.add_argument("--src", required=True, help="source sentences (or text), one per line")
    parser.add_argument("--ref", help="reference translations, line-aligned (translation only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    task = config.load_run(args.model).task
    if task == "classification":
        from tf_transformer.decoding.classifier import TextClassifier
        from tf_transformer.evaluation.test_set import evaluate_classifier_file

        results = evaluate_classifier_file(TextClassifier.from_run(args.model), args.src)
        _print_results(results, args.json)
        return
    if task == "language_model":
        from tf_transformer.evaluation.test_set import evaluate_language_model_file

        _print_results(evaluate_language_model_file(_generator(args), args.src), args.json)
        return
    if args.ref is None:
        raise ValueError("evaluate needs --ref for a translation run")
    from tf_transformer.evaluation.test_set import evaluate_files  # imports TensorFlow

    _print_results(evaluate_files(_translator(args), args.src, args.ref), args.json)


def _print_results(results: dict, as_json: bool) -> None:
    """One JSON object on the last line, or one `name: value` line each."""
    if as_json:
        print(json.dumps(results))
    else:
        for name, value in results.items():
            print(f"{name}: {value}")


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --set SECTION.KEY=VALUE, read by `config.load`."""
    parser.add_argument(
        "--config", action="append", default=[], help="YAML config file (repeatable; later wins)"
    )
    parser.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override config keys, e.g. --set train.steps=200 model.dropout=0.1 (repeatable)",
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
        help="the final model is exported as the SavedModel EXPORT_DIR/NAME/N, N the next "
        "version (default: saved_models)",
    )
    parser.add_argument(
        "--init-from",
        metavar="RUN",
        help="fine-tune from a pretrained run directory (train.init_from): translation takes "
        "its encoder-decoder, classification its encoder, and both its vocabulary",
    )
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    overrides = list(args.set)
    if getattr(args, "init_from", None):
        overrides.append(f"train.init_from={json.dumps(args.init_from)}")
    experiment = config.load(args.config, overrides)  # config errors before the slow import
    from tf_transformer import tasks  # imports TensorFlow: only when it runs

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Config files and directories may be URLs (gs://): no pathlib.
    name = posixpath.splitext(posixpath.basename(args.config[-1]))[0] if args.config else "default"
    run_dir = args.output_dir or config.join_path("runs", name)
    metrics = tasks.run(
        experiment, output_dir=run_dir, export_path=config.join_path(args.export_dir, name)
    )
    print_training_summary(experiment.task, metrics, run_dir)


def print_training_summary(task: str, metrics: dict, run_dir: str) -> None:
    """The test scores, steps, time and samples of a finished run."""
    if task == "classification":
        print(
            f"\nTest accuracy {metrics['test_accuracy']:.2f}, macro-F1 "
            f"{metrics['test_macro_f1']:.2f} (labels {', '.join(metrics['labels'])})"
        )
        print(f"{metrics['steps']} steps in {metrics['wall_time_s']:.0f} s.")
    elif task == "denoising":
        print(
            f"\nValidation loss {metrics['validation_loss']:.4f} ({metrics['objective']} on "
            f"{', '.join(metrics['languages'])}); {metrics['steps']} steps in "
            f"{metrics['wall_time_s']:.0f} s."
        )
    elif task == "language_model":
        print(
            f"\nTest perplexity {metrics['test_perplexity']:.2f} per token, "
            f"{metrics['test_word_perplexity']:.2f} per word"
        )
        print(f"{metrics['steps']} steps in {metrics['wall_time_s']:.0f} s. Samples:")
        for sample in metrics["samples"]:
            print(f"  prompt:     {sample['prompt']}")
            print(f"  generation: {sample['generation']}")
    else:
        print(
            f"\nTest BLEU {metrics['bleu']:.2f}, chrF {metrics['chrf']:.2f} "
            f"({metrics['bleu_signature']})"
        )
        print(f"{metrics['steps']} steps in {metrics['wall_time_s']:.0f} s. Sample translations:")
        for sample in metrics["samples"]:
            print(f"  source:      {sample['source']}")
            print(f"  translation: {sample['translation']}")
            print(f"  reference:   {sample['reference']}")
    print(
        f"Run directory: {run_dir}"
        + (f"; SavedModel exported to {metrics['saved_model']}" if "saved_model" in metrics else "")
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
    return _with_flags(config.load(args.config, args.set).data, args)


def _run_build_vocab(args: argparse.Namespace) -> None:
    from tf_transformer.data import tokenizer  # imports TensorFlow: only when it runs

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tokenizer.build_vocabulary(_data_config(args))


# TensorFlow's native start-up lines: absl-format lines ("I1202 19:30:00.123 4242
# port.cc:153] oneDNN ...") at info level, or at any level from the start-up sources
# below; the notice absl prints before it is initialised; the CPU-feature notice's
# second line. None of TF_CPP_MIN_LOG_LEVEL's levels hides them: they are written
# before absl reads it.
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] ")
_STARTUP_SOURCES = {
    "port.cc",
    "cudart_stub.cc",
    "cpu_feature_guard.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "cuda_dnn.cc",
    "cuda_fft.cc",
    "cuda_blas.cc",
    "util.cc",
}
_STARTUP_NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called",
    "To enable the following instructions:",
)


def is_startup_noise(line: str) -> bool:
    """Whether a stderr line is one of TensorFlow's native start-up lines."""
    if line.startswith(_STARTUP_NOTICES):
        return True
    match = _ABSL_LINE.match(line)
    return bool(match) and (match.group(1) == "I" or match.group(2) in _STARTUP_SOURCES)


def _filter_native_stderr():
    """Routes file descriptor 2 through a thread that drops `is_startup_noise` lines and
    passes every other line on (Python's warnings, logging and errors too). Returns
    the function that restores stderr once everything written has passed."""
    read_end, write_end = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(os.dup(real_stderr), "wb", 0) as out:
            for line in pipe:
                if not is_startup_noise(line.decode("utf-8", "replace")):
                    out.write(line)

    thread = threading.Thread(target=pump, daemon=True, name="stderr-filter")
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes the pipe's last write end: the pump drains it
        thread.join(timeout=10)
        os.close(real_stderr)

    return restore


def console_main() -> int:
    """The `tf-transformer` console script: `main`, quiet unless --verbose."""
    if "--verbose" in sys.argv[1:]:
        return main()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    restore_stderr = _filter_native_stderr()
    try:
        return main()
    finally:
        restore_stderr()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        ImportError,
        FloatingPointError,
    ) as error:
        print(f"tf-transformer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console_main())
