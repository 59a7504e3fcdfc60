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

from tf_transformer.config import DataConfig, DenoisingConfig
from tf_transformer.constants import BOS, EOS, FIRST_SENTINEL, MASK, PAD
from tf_transformer.data import pipeline


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


def denoising_lengths(objective: DenoisingConfig, inputs_length: int) -> tuple[int, int]:
    """(raw tokens per packed window, decoder length) for encoder inputs of
    `inputs_length` tokens: span corruption's exact lengths; for text infilling the
    window is inputs_length - 1 tokens (the inputs add EOS) and the decoder reads BOS +
    the window."""
    if objective.objective == "span_corruption":
        return span_corruption_lengths(
            inputs_length, objective.noise_density, objective.mean_noise_span_length
        )
    return inputs_length - 1, inputs_length


def sentinels_needed(objective: DenoisingConfig, inputs_length: int) -> int:
    """Sentinel ids span corruption uses on packed windows for `inputs_length` inputs."""
    if objective.objective != "span_corruption":
        return 0
    raw_length, _ = denoising_lengths(objective, inputs_length)
    return span_corruption_counts(
        raw_length, objective.noise_density, objective.mean_noise_span_length
    )[1]


def denoising_example(
    objective: DenoisingConfig, window: tf.Tensor, seed: tf.Tensor, inputs_length: int
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """One packed window corrupted by `objective` into the encoder-decoder's format:
    ({"encoder_inputs" [inputs_length], "decoder_inputs" [T]}, targets [T]), with
    decoder_inputs = BOS + targets[:-1]."""
    if objective.objective == "span_corruption":
        inputs, targets = span_corruption(
            window,
            seed,
            FIRST_SENTINEL,
            objective.noise_density,
            objective.mean_noise_span_length,
        )
    else:
        inputs, original = text_infilling(
            window, seed, MASK, objective.mask_ratio, objective.poisson_lambda
        )
        eos = tf.constant([EOS], window.dtype)
        inputs = tf.concat([inputs[: inputs_length - 1], eos], 0)
        targets = tf.concat([original, eos], 0)
    inputs = tf.pad(inputs, [[0, inputs_length - tf.shape(inputs)[0]]], constant_values=PAD)
    decoder_inputs = tf.concat([tf.constant([BOS], window.dtype), targets[:-1]], 0)
    return {
        "encoder_inputs": tf.ensure_shape(inputs, [inputs_length]),
        "decoder_inputs": decoder_inputs,
    }, targets


def make_denoising_dataset(
    windows: tf.data.Dataset,
    config: DataConfig,
    objective: DenoisingConfig,
    seed: int,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
    initial_step: int = 0,
    name: str | None = None,
) -> tf.data.Dataset:
    """Per-replica batches of packed token `windows` (`packing.pack_windows`) corrupted
    by `objective`, batch_tokens // max_length rows per replica, one static shape.

    Example k of this input pipeline is corrupted with `example_seed(seed, g)`, g its
    index in the whole stream (k * pipelines + pipeline id), whatever the replicas:
    training repeats the shuffled windows here, so every epoch (and a resumed run, from
    `initial_step`) draws new noise; evaluation draws the same noise every time."""
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    windows = pipeline.pipeline_examples(
        windows, config, input_context, training, initial_step, name
    )
    replicas = pipeline.replicas_per_pipeline(input_context)
    rows = replicas * (pipeline.replica_batch_tokens(config, input_context) // config.max_length)
    first_index = 0
    if training:
        windows = windows.repeat()
        first_index = initial_step * rows
    examples = windows.enumerate(first_index).map(
        lambda index, window: denoising_example(
            objective,
            window,
            example_seed(seed, index * pipelines + pipeline_id),
            config.max_length,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    batches = examples.batch(rows, drop_remainder=training)
    if not training:
        batches = batches.map(
            lambda features, targets: tf.nest.map_structure(
                lambda ids: tf.pad(ids, [[0, rows - tf.shape(ids)[0]], [0, 0]]),
                (features, targets),
            )
        )
    return pipeline.split_among_replicas(batches, replicas).prefetch(tf.data.AUTOTUNE)
