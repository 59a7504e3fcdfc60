"""Labelled text for classification: TSV files `text<TAB>label`, checked line by line,
and bucketed batches of token ids with their class ids.

A file is SPLIT.tsv or SPLIT.tsv.gz in data.data_dir (SPLIT: train, validation, test),
plain UTF-8, one example per line, the label after the last tab. A first line whose
label field is "label" is a header and skipped. Labels are names or integers; the
label set is the training file's (sorted, numerically when all are integers). A line
without a tab, an empty text or label, a label the training file lacks, or a training
file with one class raises ValueError naming the file and line. Texts longer than
max_length tokens are cut (EOS kept) and counted.

Batch format, the classifier's contract:
    (token ids int32 [B, S], class ids int32 [B], weights float32 [B])
with token ids = pieces + EOS, padded with PAD; padding rows (which fill static
evaluation batches) weigh 0, so they count in neither the loss nor the metrics.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from tf_transformer.config import DataConfig, join_path
from tf_transformer.constants import EOS, PAD
from tf_transformer.data import pipeline, sources

logger = logging.getLogger(__name__)


class LabelledText(NamedTuple):
    path: str
    texts: list[str]
    labels: list[str]
    line_numbers: list[int]


class TokenizedExamples(NamedTuple):
    # Unbatched (token ids int32 [length], class id int32 []) examples.
    dataset: tf.data.Dataset
    examples: int
    truncated: int  # texts cut to max_length tokens


def split_path(config: DataConfig, split: str) -> str:
    """SPLIT.tsv (or .gz) in config.data_dir."""
    if config.source != "files":
        raise ValueError(
            f'classification reads TSV files: set data.source="files" and data.data_dir, '
            f"not source={config.source!r}"
        )
    for name in (f"{split}.tsv", f"{split}.tsv.gz"):
        path = join_path(config.data_dir, name)
        if tf.io.gfile.exists(path):
            return path
    raise FileNotFoundError(f"No {split}.tsv (or .tsv.gz) in {config.data_dir}")


def read_labelled_tsv(path: str) -> LabelledText:
    """The examples of one TSV file, every line checked (see the module docstring)."""
    texts, labels, line_numbers = [], [], []
    for line_number, line in sources.checked_lines(path):
        line = line.rstrip("\r\n")
        text, tab, label = line.rpartition("\t")
        if not tab:
            raise ValueError(f"{path}: line {line_number} has no tab (expected text<TAB>label)")
        if sources.is_header(line_number, line):
            continue
        label = label.strip()
        if not text.strip():
            raise ValueError(f"{path}: line {line_number} has an empty text")
        if not label:
            raise ValueError(f"{path}: line {line_number} has an empty label")
        texts.append(text)
        labels.append(label)
        line_numbers.append(line_number)
    if not texts:
        raise ValueError(f"{path}: no examples")
    return LabelledText(path, texts, labels, line_numbers)


def label_names(training: LabelledText) -> list[str]:
    """The label set of a training file, sorted (numerically when all are integers)."""
    names = set(training.labels)
    if len(names) < 2:
        raise ValueError(
            f"{training.path}: every example has the label {next(iter(names))!r}; "
            "a classifier needs at least two classes"
        )
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def class_ids(examples: LabelledText, names: list[str]) -> list[int]:
    """The class id of each example; a label outside `names` is an error naming its line."""
    index = {name: position for position, name in enumerate(names)}
    ids = []
    for label, line_number in zip(examples.labels, examples.line_numbers, strict=True):
        if label not in index:
            raise ValueError(
                f"{examples.path}: line {line_number} has the label {label!r}, which the "
                f"training file does not have (its labels: {', '.join(names)})"
            )
        ids.append(index[label])
    return ids


def tokenize_examples(
    examples: LabelledText,
    ids: list[int],
    tokenizer: tf_text.SentencepieceTokenizer,
    max_length: int,
) -> TokenizedExamples:
    """Token ids (pieces + EOS, cut to `max_length`) and class ids of `examples`."""
    pieces = tokenizer.tokenize(tf.constant(examples.texts))
    truncated = int(tf.math.count_nonzero(pieces.row_lengths() > max_length - 1))
    if truncated:
        logger.warning(
            "%s: %d of %d texts are longer than %d tokens and were cut",
            examples.path,
            truncated,
            len(examples.texts),
            max_length,
        )
    pieces = pieces[:, : max_length - 1]
    token_ids = tf.concat([pieces, tf.fill([pieces.nrows(), 1], EOS)], axis=1)
    dataset = tf.data.Dataset.from_tensor_slices((token_ids, tf.constant(ids, tf.int32)))
    return TokenizedExamples(dataset, len(ids), truncated)


def make_dataset(
    examples: tf.data.Dataset,
    config: DataConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
    initial_step: int = 0,
    name: str | None = None,
) -> tf.data.Dataset:
    """Per-replica batches of `examples` (`TokenizedExamples.dataset`) in the batch
    format above, bucketed by length under the token budget as `pipeline.make_dataset`
    does: training shuffles (seeded by `initial_step`) and drops partial batches,
    evaluation fills them with padding rows of weight 0."""
    batch_tokens = pipeline.replica_batch_tokens(config, input_context)
    replicas = pipeline.replicas_per_pipeline(input_context)
    examples = pipeline.pipeline_examples(
        examples, config, input_context, training, initial_step, name
    )
    examples = examples.map(lambda ids, label: (ids, label, tf.constant(1.0)))
    lengths = pipeline.bucket_lengths(config)
    batches = examples.bucket_by_sequence_length(
        element_length_func=lambda ids, label, weight: tf.shape(ids)[0],
        bucket_boundaries=[length + 1 for length in lengths],
        bucket_batch_sizes=[replicas * (batch_tokens // length) for length in lengths] + [replicas],
        padding_values=(PAD, 0, 0.0),
        pad_to_bucket_boundary=True,
        drop_remainder=training,
    )
    if not training:

        def filled(ids, labels, weights):
            rows = replicas * (batch_tokens // tf.shape(ids)[1])
            missing = rows - tf.shape(ids)[0]
            return (
                tf.pad(ids, [[0, missing], [0, 0]]),
                tf.pad(labels, [[0, missing]]),
                tf.pad(weights, [[0, missing]]),
            )

        batches = batches.map(filled)
    return pipeline.split_among_replicas(batches, replicas).prefetch(tf.data.AUTOTUNE)
