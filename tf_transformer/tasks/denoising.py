"""The denoising task: self-supervised pretraining of an encoder-decoder on monolingual
text in one or more languages (a joint vocabulary with the mask and sentinel pieces
reserved), by T5 span corruption or BART text infilling (data/noising.py), validated by
the loss on corrupted validation text. Fine-tune the run with `train --init-from RUN`.

Run directory: see `training.run`; metrics.json holds the validation loss and
perplexity, the loss history, the packing report per split and the objective's lengths.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from tf_transformer.config import ExperimentConfig
from tf_transformer.data import noising, packing, sources, tokenizer
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.run import Run, run_directory


def check_experiment(experiment: ExperimentConfig) -> None:
    """Raises ValueError when the vocabulary or the model cannot hold the objective."""
    objective, data = experiment.denoising, experiment.data
    needed = noising.sentinels_needed(objective, data.max_length)
    if data.extra_ids < max(needed, 1):
        raise ValueError(
            f"data.extra_ids={data.extra_ids}: {objective.objective} on inputs of "
            f"data.max_length={data.max_length} tokens needs the mask piece and "
            f"{needed} sentinels; set data.extra_ids to at least {max(needed, 1)}"
        )
    _, decoder_length = noising.denoising_lengths(objective, data.max_length)
    if experiment.model.max_length < decoder_length:
        raise ValueError(
            f"model.max_length ({experiment.model.max_length}) must be at least the "
            f"targets' {decoder_length} tokens"
        )


def monolingual_lines(experiment: ExperimentConfig, split: str) -> tf.data.Dataset:
    """The lines of every pretraining language (and, for training, of
    denoising.extra_text_files), each corpus shuffled on its own (training: seeded, so
    no pairing of a parallel corpus survives), one after another."""
    data, objective = experiment.data, experiment.denoising
    corpora = [
        sources.load_lines(data, split, language) for language in objective.language_list(data)
    ]
    if split == "train":
        corpora += [sources.text_file_lines(path) for path in objective.extra_text_paths()]
        corpora = [
            lines.shuffle(1_000_000, seed=data.shuffle_seed + index, reshuffle_each_iteration=False)
            for index, lines in enumerate(corpora)
        ]
    combined = corpora[0]
    for lines in corpora[1:]:
        combined = combined.concatenate(lines)
    return combined


def _train_vocabulary(experiment: ExperimentConfig, data) -> list:
    """The joint vocabulary of all the pretraining text."""
    lines = monolingual_lines(dataclasses.replace(experiment, data=data), "train")
    sentences = (
        line.decode("utf-8") for line in lines.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
    )
    return [tokenizer.train_vocabulary(sentences, tokenizer.vocabulary_paths(data)[0], data)]


def train(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Pretrains an encoder-decoder on `experiment`'s monolingual text; returns the
    metrics it writes. (A pretrained model is for fine-tuning: `export_path` is unused.)"""
    check_experiment(experiment)
    with run_directory(
        experiment, output_dir, lambda data: _train_vocabulary(experiment, data)
    ) as run:
        return _train(run)


def _train(run: Run) -> dict[str, Any]:
    data, objective = run.data, run.experiment.denoising
    vocabulary_path = tokenizer.vocabulary_paths(data)[0]
    tokenizer.check_reserved_pieces(vocabulary_path, data.extra_ids)
    text_tokenizer = tokenizer.load_tokenizer(vocabulary_path)
    vocab_size = int(text_tokenizer.vocab_size())
    experiment = dataclasses.replace(
        run.experiment,
        model=dataclasses.replace(
            run.experiment.model, source_vocab_size=vocab_size, target_vocab_size=vocab_size
        ),
    )
    run.save_config(experiment)
    window, decoder_length = noising.denoising_lengths(objective, data.max_length)
    packed = {
        split: packing.pack_windows(
            monolingual_lines(experiment, split),
            text_tokenizer,
            window,
            training=split == "train",
            name=split,
        )
        for split in ("train", "validation")
    }
    seed = experiment.train.seed
    model, metrics = run.fit(
        lambda: Seq2SeqTransformer(experiment.model),
        lambda context, resumed: noising.make_denoising_dataset(
            packed["train"].dataset,
            data,
            objective,
            seed,
            context,
            initial_step=resumed,
            name="train",
        ),
        lambda context: noising.make_denoising_dataset(
            packed["validation"].dataset,
            data,
            objective,
            seed,
            context,
            training=False,
            name="validation",
        ),
    )
    if not run.chief:
        return metrics
    run.save_model(model)
    history = metrics["history"]
    metrics = {
        "validation_loss": history.get("val_loss", [None])[-1],
        "validation_perplexity": history.get("val_perplexity", [None])[-1],
        **metrics,
        "objective": objective.objective,
        "languages": list(objective.language_list(data)),
        "inputs_length": data.max_length,
        "raw_tokens_per_window": window,
        "targets_length": decoder_length,
        "packing": {split: packed[split].report._asdict() for split in packed},
    }
    return run.write_metrics(metrics)
