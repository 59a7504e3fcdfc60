"""Denoising objectives for self-supervised pretraining, as in-graph tf.data transforms.

- T5 span corruption (Raffel et al., 2020, `t5/data/preprocessors.py`): a share
  `noise_density` of the tokens, in spans of mean length `mean_noise_span_length`, is
  dropped from the input; each dropped span leaves one sentinel behind, and the targets
  are the dropped spans, each after its sentinel, then EOS. The lengths depend only on the
  input length, so packed inputs of a fixed length give inputs and targets of fixed
  lengths (`span_corruption_lengths`).
- BART text infilling (Lewis et al., 2020, fairseq's `denoising_dataset.py`): span
  lengths drawn from Poisson(`poisson_lambda`) cover a share `mask_ratio` of the tokens;
  each span becomes one mask token (a zero-length span inserts one); the target is the
  original text.

Neither keras-hub nor tensorflow-text has these (keras-hub's MaskedLMMaskGenerator masks
single tokens for BERT), so they are written here. Every transform is stateless: the
same seed (a [2] integer tensor, e.g. from `example_seed`) gives the same corruption on
any machine, under any strategy. The sentinels and the mask token are pieces reserved
when the vocabulary is trained (`tokenizer.reserved_pieces`).
"""

from __future__ import annotations

import tensorflow as tf

from tf_transformer.constants import EOS


def span_corruption_counts(
    tokens_length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """(noise tokens, noise spans) of a sequence of `tokens_length` tokens, as T5 counts
    them: round(L * density) noise tokens (at least 1, at most L - 1) in round(noise /
    mean) spans (at least 1)."""
    noise_tokens = min(max(round(tokens_length * noise_density), 1), tokens_length - 1)
    return noise_tokens, max(round(noise_tokens / mean_noise_span_length), 1)


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens, targets length) for corrupted inputs of exactly `inputs_length`
    tokens (EOS included): the longest raw sequence whose corrupted input still fits, and
    the length of its targets (T5's `random_spans_helper`; 512 -> (568, 114))."""

    def corrupted_lengths(tokens_length: int) -> tuple[int, int]:
        noise, spans = span_corruption_counts(tokens_length, noise_density, mean_noise_span_length)
        return tokens_length - noise + spans + 1, noise + spans + 1

    if inputs_length < 3:
        raise ValueError(f"span corruption needs inputs of at least 3 tokens, got {inputs_length}")
    tokens_length = inputs_length - 1
    while corrupted_lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, corrupted_lengths(tokens_length)[1]


def example_seed(seed: int, index: tf.Tensor) -> tf.Tensor:
    """The stateless seed of example `index` of a stream seeded `seed`: [2] int64."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 0], tf.int64), tf.cast(index, tf.int64)
    )


def _stateless_shuffle(values: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.gather(values, tf.argsort(tf.random.stateless_uniform(tf.shape(values), seed)))


def _random_segmentation(items: tf.Tensor, segments: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Lengths of `segments` non-empty segments that `items` items are cut into at random."""
    first_in_segment = tf.pad(
        _stateless_shuffle(tf.cast(tf.range(items - 1) < segments - 1, tf.int32), seed), [[1, 0]]
    )
    return tf.math.segment_sum(tf.ones_like(first_in_segment), tf.cumsum(first_in_segment))


def random_spans_noise_mask(
    length: tf.Tensor, noise_density: float, mean_noise_span_length: float, seed: tf.Tensor
) -> tf.Tensor:
    """bool [length]: which tokens are noise, in spans that alternate with non-noise
    spans, the first span non-noise (T5's `random_spans_noise_mask`, stateless)."""
    length = tf.convert_to_tensor(length, tf.int32)
    float_length = tf.cast(length, tf.float32)
    noise_tokens = tf.cast(tf.round(float_length * noise_density), tf.int32)
    noise_tokens = tf.minimum(tf.maximum(noise_tokens, 1), length - 1)
    noise_spans = tf.cast(
        tf.round(tf.cast(noise_tokens, tf.float32) / mean_noise_span_length), tf.int32
    )
    noise_spans = tf.maximum(noise_spans, 1)
    noise_seed, nonnoise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    noise_lengths = _random_segmentation(noise_tokens, noise_spans, noise_seed)
    nonnoise_lengths = _random_segmentation(length - noise_tokens, noise_spans, nonnoise_seed)
    span_lengths = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1), [-1])
    return tf.repeat(tf.range(2 * noise_spans) % 2 == 1, span_lengths)


def _spans_to_sentinels(tokens: tf.Tensor, drop: tf.Tensor, first_sentinel: int) -> tf.Tensor:
    """`tokens` with each run of `drop` replaced by one sentinel, the k-th run's sentinel
    `first_sentinel` + k."""
    previous_dropped = tf.pad(drop[:-1], [[1, 0]])
    first_dropped = drop & ~previous_dropped
    sentinels = first_sentinel - 1 + tf.cumsum(tf.cast(first_dropped, tokens.dtype))
    return tf.boolean_mask(tf.where(first_dropped, sentinels, tokens), ~(drop & previous_dropped))


def span_corruption(
    tokens: tf.Tensor,
    seed: tf.Tensor,
    first_sentinel: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """T5 span corruption of int32 `tokens` [L] (L >= 2): (inputs, targets), both ending
    in EOS, sentinel ids counting up from `first_sentinel`. Inputs are
    `span_corruption_lengths`'s inputs_length long when L is its raw length."""
    noise = random_spans_noise_mask(tf.size(tokens), noise_density, mean_noise_span_length, seed)
    eos = tf.constant([EOS], tokens.dtype)
    inputs = _spans_to_sentinels(tokens, noise, first_sentinel)
    targets = _spans_to_sentinels(tokens, ~noise, first_sentinel)
    return tf.concat([inputs, eos], 0), tf.concat([targets, eos], 0)


def text_infilling(
    tokens: tf.Tensor,
    seed: tf.Tensor,
    mask_id: int,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.5,
) -> tuple[tf.Tensor, tf.Tensor]:
    """BART text infilling of int32 `tokens` [L]: (inputs, targets = `tokens`).

    Span lengths are drawn from Poisson(`poisson_lambda`) until they cover
    ceil(L * mask_ratio) tokens (the last one cut to fit), then placed at random without
    overlapping; each span becomes one `mask_id` in the inputs, so a zero-length span
    inserts a mask. Unlike fairseq, spans never overlap, so exactly the drawn share is
    masked. Inputs are L - masked + spans long (shorter than L, except for rare
    sequences of many zero-length spans)."""
    length = tf.size(tokens)
    masked = tf.cast(tf.math.ceil(tf.cast(length, tf.float32) * mask_ratio), tf.int32)
    length_seed, place_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    # Enough draws to cover `masked` tokens with overwhelming probability; the rest unused.
    draws = 2 * masked + 16
    span_lengths = tf.random.stateless_poisson([draws], length_seed, poisson_lambda, tf.int32)
    covered_before = tf.cumsum(span_lengths, exclusive=True)
    spans = tf.reduce_sum(tf.cast(covered_before < masked, tf.int32))
    span_lengths = tf.minimum(span_lengths[:spans], masked - covered_before[:spans])
    # The unmasked tokens fall into spans + 1 gaps (any may be empty) around the spans.
    unmasked = length - masked
    cuts = tf.sort(tf.random.stateless_uniform([spans], place_seed, 0, unmasked + 1, tf.int32))
    boundaries = tf.concat([[0], cuts, [unmasked]], 0)
    gap_lengths = boundaries[1:] - boundaries[:-1]
    unit_lengths = tf.reshape(
        tf.stack([gap_lengths[:-1], span_lengths], axis=1), [-1]
    )  # gap, span, gap, span, ... in source order
    unit_lengths = tf.concat([unit_lengths, gap_lengths[-1:]], 0)
    is_span = tf.range(tf.size(unit_lengths)) % 2 == 1
    input_lengths = tf.where(is_span, 1, unit_lengths)  # each span becomes one mask
    unit_of_input = tf.repeat(tf.range(tf.size(unit_lengths)), input_lengths)
    offset = tf.range(tf.size(unit_of_input)) - tf.gather(
        tf.cumsum(input_lengths, exclusive=True), unit_of_input
    )
    source_index = tf.gather(tf.cumsum(unit_lengths, exclusive=True), unit_of_input) + offset
    inputs = tf.where(
        tf.gather(is_span, unit_of_input),
        tf.constant(mask_id, tokens.dtype),
        tf.gather(tokens, tf.minimum(source_index, length - 1)),
    )
    return inputs, tokens
