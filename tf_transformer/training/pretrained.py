"""Fine-tuning from a pretrained run (train.init_from): which runs a task may start from,
the vocabulary it must then use, and the pretrained model itself."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import ExperimentConfig, join_path
from tf_transformer.data import tokenizer
from tf_transformer.models import Seq2SeqTransformer, TransformerClassifier
from tf_transformer.models.base import load_run_model

# Block options that change what the weights compute without changing their shapes (a
# shape mismatch is caught when the weights are copied).
_BLOCK_DESIGN_KEYS = ("activation", "normalize_first", "position_encoding", "layer_norm_epsilon")


def from_pretrained_run(
    experiment: ExperimentConfig, output_dir: str, allowed_tasks: tuple[str, ...]
) -> ExperimentConfig:
    """`experiment` set to use the vocabulary of the run train.init_from names (joint,
    its size and reserved pieces); unchanged when init_from is empty.

    Raises:
        ValueError: that run is of a task not in `allowed_tasks`, its blocks are of
            another design (activation, normalization, positions), or `output_dir`
            already holds a run with another vocabulary.
        FileNotFoundError: it is not a run directory.
    """
    init_from = experiment.train.init_from
    if not init_from:
        return experiment
    config_path = join_path(init_from, config_lib.RUN_CONFIG)
    if not tf.io.gfile.exists(config_path):
        raise FileNotFoundError(
            f"train.init_from: {init_from} is not a run ({config_path} missing)"
        )
    pretrained = config_lib.load_run(init_from)
    if pretrained.task not in allowed_tasks:
        raise ValueError(
            f"train.init_from: {init_from} is a {pretrained.task} run; a {experiment.task} "
            f"model can start from a run of {' or '.join(allowed_tasks)}"
        )
    for key in _BLOCK_DESIGN_KEYS:
        here, there = getattr(experiment.model, key), getattr(pretrained.model, key)
        if here != there:
            raise ValueError(
                f"model.{key} is {here} here and {there} in {init_from}: the pretrained "
                f"weights would compute something else; set model.{key}={there}"
            )
    vocabulary = tokenizer.vocabulary_paths(pretrained.data)
    if len(set(vocabulary)) != 1:
        raise ValueError(f"train.init_from: {init_from} has one vocabulary per language")
    run_vocabulary = join_path(output_dir, f"{config_lib.RUN_VOCABULARY_PREFIX}.model")
    if tf.io.gfile.exists(run_vocabulary) and _read(run_vocabulary) != _read(vocabulary[0]):
        raise ValueError(
            f"{output_dir} already holds a run with another vocabulary than {init_from}'s: "
            "fine-tune into a new directory"
        )
    data = dataclasses.replace(
        experiment.data,
        vocabulary_prefix=vocabulary[0].removesuffix(".model"),
        joint_vocabulary=True,
        vocab_size=pretrained.data.vocab_size,
        extra_ids=pretrained.data.extra_ids,
    )
    return dataclasses.replace(experiment, data=data)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as file:
        return file.read()


def load_pretrained_model(run_dir: str) -> keras.Model:
    """The float32 model.keras of a run."""
    try:
        return load_run_model(run_dir, Seq2SeqTransformer, TransformerClassifier)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"train.init_from: {error}") from None
