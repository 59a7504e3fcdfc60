"""Strings in, labels and probabilities out: tokenize -> encode -> pool -> softmax."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import ExperimentConfig
from tf_transformer.data.tokenizer import load_tokenizer, vocabulary_paths
from tf_transformer.decoding.translator import COMMAND_OF_TASK, source_token_ids, string_tensor
from tf_transformer.models import TransformerClassifier
from tf_transformer.models.base import load_run_model

# The label set of a classification run, one label per line, in class-id order.
LABELS_FILE = "labels.txt"


class Prediction(NamedTuple):
    label: str
    probability: float  # of that label


def read_labels(run_dir: str) -> list[str]:
    with tf.io.gfile.GFile(config_lib.join_path(run_dir, LABELS_FILE)) as file:
        return file.read().splitlines()


def write_labels(run_dir: str, labels: list[str]) -> None:
    with tf.io.gfile.GFile(config_lib.join_path(run_dir, LABELS_FILE), "w") as file:
        file.write("".join(f"{label}\n" for label in labels))


def text_probabilities(model, tokenizer, texts, max_length: int):
    """Class probabilities ``[B, num_classes]`` float32 of tf.string `texts` ``[B]``,
    each cut to `max_length` tokens (EOS included) as in training. Pure TensorFlow: the
    Python `TextClassifier` and the exported SavedModel share it."""
    token_ids, _ = source_token_ids(tokenizer, texts, max_length)
    return tf.nn.softmax(model(token_ids, training=False), axis=-1)


class TextClassifier:
    """Labels texts with a trained `TransformerClassifier`.

    Example:
    ```python
    classifier = TextClassifier.from_run("runs/sst2")
    classifier.classify(["a gorgeous , witty film"])  # [Prediction("1", 0.97)]
    ```
    """

    def __init__(self, model, tokenizer, labels: list[str], max_length: int, batch_size: int = 64):
        if len(labels) != model.config.num_classes:
            raise ValueError(
                f"{len(labels)} labels for a model of {model.config.num_classes} classes"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self._probabilities = tf.function(
            lambda texts: text_probabilities(model, tokenizer, texts, max_length),
            input_signature=[tf.TensorSpec([None], tf.string)],
            reduce_retracing=True,
        )

    @classmethod
    def from_run(cls, run_dir: str, **options) -> TextClassifier:
        """The classifier of a classification run directory (local path or URL)."""
        run_dir = str(run_dir)
        experiment = config_lib.load_run(run_dir)
        if experiment.task != "classification":
            raise ValueError(
                f"{run_dir} is a {experiment.task} run, not a classifier"
                + COMMAND_OF_TASK.get(experiment.task, ": use tf-transformer translate")
            )
        model = load_run_model(run_dir, TransformerClassifier)
        tokenizer = load_tokenizer(vocabulary_paths(experiment.data)[0])
        return cls(model, tokenizer, read_labels(run_dir), input_length(experiment), **options)

    def probabilities(self, texts: list[str | bytes]) -> np.ndarray:
        """``[len(texts), num_classes]`` float32 class probabilities."""
        if not len(texts):
            return np.zeros((0, len(self.labels)), np.float32)
        batches = [
            self._probabilities(string_tensor(texts[start : start + self.batch_size])).numpy()
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(batches)

    def classify(self, texts: list[str | bytes]) -> list[Prediction]:
        """The most probable label of each text and its probability."""
        probabilities = self.probabilities(texts)
        best = probabilities.argmax(axis=1)
        return [
            Prediction(self.labels[index], float(row[index]))
            for index, row in zip(best, probabilities, strict=True)
        ]


def input_length(experiment: ExperimentConfig) -> int:
    """Tokens of a classifier's input (EOS included): longer texts are cut."""
    return min(experiment.data.max_length, experiment.model.max_length)
