"""Monolingual text packed into fixed-length sequences, for language models.

Each line becomes BOS + its pieces + EOS; the lines follow one another in one token
stream that is cut into sequences of `sequence_length` + 1 tokens, so no position
holds padding (GPT-2's packing, with our BOS/EOS in place of <|endoftext|>). A
sequence gives inputs = its first `sequence_length` tokens and targets = the next
token at each position; a target that is BOS (the start of the next line, which a
prompt always supplies) is PAD, so it counts zero in the loss. Empty lines are dropped
and counted; the training stream's last incomplete sequence is dropped and its tokens
counted; evaluation pads its last sequence with PAD (targets that count zero), so every
token counts.

Batch format, the language model's contract: (inputs int32 [B, T], targets int32 [B, T]).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from tf_transformer.config import DataConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.data import pipeline

logger = logging.getLogger(__name__)


class PackingReport(NamedTuple):
    """What `pack_lines` made of a corpus split."""

    lines: int  # non-empty lines packed
    dropped_empty: int  # empty lines (no piece), dropped
    tokens: int  # tokens in the stream, BOS and EOS included
    sequences: int  # sequences of sequence_length + 1 tokens
    dropped_tail_tokens: int  # tokens of the incomplete last sequence (training drops it)
    real_token_share: float  # inputs that are text, not padding


class PackedText(NamedTuple):
    # Unbatched sequences: (inputs int32 [T], targets int32 [T]) from `pack_lines`,
    # int32 [window] token windows from `pack_windows`.
    dataset: tf.data.Dataset
    report: PackingReport


def pack_lines(
    lines: tf.data.Dataset,
    tokenizer: tf_text.SentencepieceTokenizer,
    sequence_length: int,
    *,
    training: bool = True,
    name: str = "lines",
) -> PackedText:
    """Tokenizes scalar tf.string `lines` and packs them into sequences of
    `sequence_length` inputs and targets (see the module docstring). A first pass here
    counts lines, tokens and what is dropped (logged and returned)."""
    windows = pack_windows(lines, tokenizer, sequence_length + 1, training=training, name=name)
    return PackedText(windows.dataset.map(_inputs_and_targets), windows.report)


def pack_windows(
    lines: tf.data.Dataset,
    tokenizer: tf_text.SentencepieceTokenizer,
    window: int,
    *,
    training: bool = True,
    name: str = "lines",
) -> PackedText:
    """The token stream of scalar tf.string `lines` (BOS + pieces + EOS each) cut into
    int32 [`window`] sequences; training drops the incomplete last one, evaluation pads
    it with PAD. A first pass counts lines, tokens and what is dropped (logged and
    returned)."""

    def line_tokens(batch: tf.Tensor) -> tf.Tensor:
        pieces = tokenizer.tokenize(batch)  # ragged [b, (length)]
        rows = tf.shape(batch, out_type=tf.int64)[:1]
        framed = tf.concat(
            [
                tf.fill(tf.concat([rows, [1]], 0), BOS),
                pieces,
                tf.fill(tf.concat([rows, [1]], 0), EOS),
            ],
            axis=1,
        )
        return tf.ragged.boolean_mask(framed, pieces.row_lengths() > 0).flat_values

    def counts(totals: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
        lengths = tokenizer.tokenize(batch).row_lengths()
        kept = tf.math.count_nonzero(lengths > 0)
        return totals + tf.stack([kept, tf.size(lengths, tf.int64) - kept, tf.reduce_sum(lengths)])

    batched_lines = lines.batch(pipeline.TOKENIZE_BATCH_SIZE)
    kept, empty, pieces = (
        int(value) for value in batched_lines.reduce(tf.zeros([3], tf.int64), counts).numpy()
    )
    tokens = pieces + 2 * kept
    if not kept:
        raise ValueError(f"{name}: no non-empty line to train on")
    stream = batched_lines.map(line_tokens, num_parallel_calls=tf.data.AUTOTUNE)
    sequences = stream.rebatch(window, drop_remainder=training)
    if not training:
        sequences = sequences.map(
            lambda ids: tf.pad(ids, [[0, window - tf.shape(ids)[0]]], constant_values=PAD)
        )
    complete, tail = divmod(tokens, window)
    real_positions = tokens if not training else complete * window
    total_positions = (complete + (1 if tail and not training else 0)) * window
    report = PackingReport(
        lines=kept,
        dropped_empty=empty,
        tokens=tokens,
        sequences=complete + (1 if tail and not training else 0),
        dropped_tail_tokens=tail if training else 0,
        real_token_share=round(real_positions / max(total_positions, 1), 4),
    )
    logger.info(
        "%s: %d lines packed into %d sequences of %d tokens (%d empty lines dropped, %d tail "
        "tokens dropped, real-token share %.4f)",
        name,
        report.lines,
        report.sequences,
        window,
        report.dropped_empty,
        report.dropped_tail_tokens,
        report.real_token_share,
    )
    return PackedText(sequences.map(lambda ids: tf.ensure_shape(ids, [window])), report)


def _inputs_and_targets(window_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    targets = window_ids[1:]
    return window_ids[:-1], tf.where(tf.equal(targets, BOS), PAD, targets)


def make_packed_dataset(
    sequences: tf.data.Dataset,
    config: DataConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
    initial_step: int = 0,
    name: str | None = None,
) -> tf.data.Dataset:
    """Per-replica batches of packed `sequences` (`PackedText.dataset`): batch_tokens //
    sequence_length sequences per replica, one static shape. Sharded per input
    pipeline and cached as config.cache says; training shuffles (seeded by
    `initial_step` as `pipeline.make_dataset` does) and drops the last partial batch,
    evaluation fills it with PAD rows that count zero."""
    replicas = pipeline.replicas_per_pipeline(input_context)
    sequences = pipeline.pipeline_examples(
        sequences, config, input_context, training, initial_step, name
    )
    element_spec = sequences.element_spec[0]
    rows = replicas * (
        pipeline.replica_batch_tokens(config, input_context) // element_spec.shape[0]
    )
    batches = sequences.batch(rows, drop_remainder=training)
    if not training:
        batches = batches.map(
            lambda inputs, targets: tuple(
                tf.pad(ids, [[0, rows - tf.shape(ids)[0]], [0, 0]], constant_values=PAD)
                for ids in (inputs, targets)
            )
        )
    return pipeline.split_among_replicas(batches, replicas).prefetch(tf.data.AUTOTUNE)
