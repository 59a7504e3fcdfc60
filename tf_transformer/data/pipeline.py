"""tf.data input pipeline: string pairs -> padded batches in the model's format.

Two stages, so that tokenization happens once and its losses are counted before training:

1. `tokenize_pairs`: tokenize batches of sentences in-graph, add EOS / BOS, count and
   drop pairs with an empty side or longer than max_length (the counts are logged and
   returned, never silent), and count the kept pairs by length (`bucket_report` turns
   that into the pairs that no static batch would ever take).
2. `make_dataset`: shard per input pipeline, cache (config.cache), shuffle, bucket by
   length under a token budget per replica, pad, split each bucketed batch among the
   replicas that the pipeline feeds, prefetch. Pass it (partially applied) to
   `strategy.distribute_datasets_from_function`.

Batch format, the model's contract:
    ({"encoder_inputs": int32 [B, S], "decoder_inputs": int32 [B, T]}, targets int32 [B, T])
with encoder_inputs = source ids + EOS, decoder_inputs = BOS + target ids,
targets = target ids + EOS, padded with PAD. Padding rows (which fill static evaluation
batches) have PAD targets, so the loss and the metrics count them zero.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from tf_transformer.config import DataConfig, make_parent_directory
from tf_transformer.constants import BOS, EOS, PAD

logger = logging.getLogger(__name__)

# Sentences per vectorized tokenizer call.
TOKENIZE_BATCH_SIZE = 1024


class FilterReport(NamedTuple):
    """What `tokenize_pairs` kept and dropped."""

    kept: int
    dropped_empty: int  # pairs with a side that has no token (an empty line)
    dropped_too_long: int  # non-empty pairs with a side longer than max_length tokens


class TokenizedPairs(NamedTuple):
    # Unbatched examples in the model's format, pairs that passed the filter only:
    # ({"encoder_inputs": int32 [S], "decoder_inputs": int32 [T]}, targets int32 [T]).
    dataset: tf.data.Dataset
    report: FilterReport
    # Kept pairs by length: entry i counts the pairs whose longer side has i tokens
    # (EOS / BOS included), for i in 0..max_length. See `bucket_report`.
    length_counts: tuple[int, ...] = ()


def tokenize_pairs(
    pairs: tf.data.Dataset,
    source_tokenizer: tf_text.SentencepieceTokenizer,
    target_tokenizer: tf_text.SentencepieceTokenizer,
    max_length: int,
    *,
    cache: bool = False,
    name: str = "pairs",
) -> TokenizedPairs:
    """Tokenizes (source, target) string pairs, adds EOS / BOS, and drops the pairs with an
    empty side or a side longer than `max_length` tokens (special ids included).

    Works on batches of sentences (one tokenizer call per batch). A first pass over the
    data, here, tokenizes it to count what is dropped and the kept pairs' lengths; the
    returned dataset tokenizes again when read. `make_dataset` caches it (config.cache)
    after sharding; `cache=True` caches it here, whole, in memory: only for a dataset that
    one input pipeline reads whole and more than once.
    """
    lengths_size = max_length + 1

    def tokenize_batch(source_text: tf.Tensor, target_text: tf.Tensor):
        source_ids = source_tokenizer.tokenize(source_text)  # [batch, (source length)]
        target_ids = target_tokenizer.tokenize(target_text)  # [batch, (target length)]
        source_lengths, target_lengths = source_ids.row_lengths(), target_ids.row_lengths()
        empty = (source_lengths == 0) | (target_lengths == 0)
        # + 1 for the EOS of encoder_inputs and targets, the BOS of decoder_inputs.
        lengths = tf.maximum(source_lengths, target_lengths) + 1
        too_long = ~empty & (lengths > max_length)
        kept = ~empty & ~too_long
        kept_lengths = tf.cast(tf.boolean_mask(lengths, kept), tf.int32)
        length_counts = tf.math.bincount(
            kept_lengths, minlength=lengths_size, maxlength=lengths_size, dtype=tf.int64
        )
        counts = tf.stack([tf.math.count_nonzero(flags) for flags in (kept, empty, too_long)])
        source_ids = tf.ragged.boolean_mask(source_ids, kept)
        target_ids = tf.ragged.boolean_mask(target_ids, kept)
        special = tf.ones([tf.shape(source_ids)[0], 1], tf.int32)
        features = {
            "encoder_inputs": tf.concat([source_ids, special * EOS], axis=1),
            "decoder_inputs": tf.concat([special * BOS, target_ids], axis=1),
        }
        targets = tf.concat([target_ids, special * EOS], axis=1)
        return features, targets, tf.concat([counts, length_counts], axis=0)

    batches = pairs.batch(TOKENIZE_BATCH_SIZE).map(
        tokenize_batch, num_parallel_calls=tf.data.AUTOTUNE
    )
    totals = batches.reduce(
        tf.zeros([3 + lengths_size], tf.int64), lambda totals, batch: totals + batch[2]
    ).numpy()
    report = FilterReport(*(int(total) for total in totals[:3]))
    message = "%s: kept %d pairs; dropped %d with an empty side and %d longer than %d tokens"
    log = logger.warning if report.dropped_empty or report.dropped_too_long else logger.info
    log(message, name, report.kept, report.dropped_empty, report.dropped_too_long, max_length)

    examples = batches.map(lambda features, targets, counts: (features, targets)).unbatch()
    # Unbatched ragged rows have rank-0-ragged specs; an element map makes them plain
    # tensors, which padded_batch needs.
    examples = examples.map(lambda features, targets: (features, targets))
    # Cache unbatched examples, not ragged batches: unbatching ragged rows every epoch would
    # cost more than all the rest of make_dataset.
    return TokenizedPairs(
        examples.cache() if cache else examples,
        report,
        tuple(int(count) for count in totals[3:]),
    )


def bucket_lengths(config: DataConfig) -> list[int]:
    """Padded lengths of the length buckets: from min_bucket_length, growing by
    bucket_growth (at least 1), up to max_length (as in tensor2tensor)."""
    lengths = []
    length = config.min_bucket_length
    while length < config.max_length:
        lengths.append(length)
        length = max(length + 1, int(length * config.bucket_growth))
    return [*lengths, config.max_length]


def replica_batch_tokens(
    config: DataConfig, input_context: tf.distribute.InputContext | None = None
) -> int:
    """The token budget of one replica's batch."""
    if input_context is None:
        return config.batch_tokens
    batch_tokens = input_context.get_per_replica_batch_size(config.batch_tokens)
    if batch_tokens < config.max_length:
        raise ValueError(
            f"batch_tokens={config.batch_tokens} over {input_context.num_replicas_in_sync} "
            f"replicas leaves {batch_tokens} tokens per replica, fewer than "
            f"max_length={config.max_length}"
        )
    return batch_tokens


def replicas_per_pipeline(input_context: tf.distribute.InputContext | None = None) -> int:
    """Replicas that one input pipeline feeds: consecutive elements of its dataset go to
    consecutive replicas (of this worker) in the same step."""
    if input_context is None:
        return 1
    return input_context.num_replicas_in_sync // input_context.num_input_pipelines


def static_batch_shapes(
    config: DataConfig, input_context: tf.distribute.InputContext | None = None
) -> list[tuple[int, int]]:
    """Every (batch size, length) that one replica gets from `make_dataset` when
    config.static_shapes: encoder_inputs, decoder_inputs and targets of a batch all have
    that shape, and every replica of a step gets the same one."""
    batch_tokens = replica_batch_tokens(config, input_context)
    return [(batch_tokens // length, length) for length in bucket_lengths(config)]


class BucketReport(NamedTuple):
    """How the kept pairs fall into length buckets (`bucket_report`)."""

    lengths: list[int]  # padded length of each bucket
    # Pairs per batch of one input pipeline in each bucket: the replica's batch size times
    # the replicas the pipeline feeds.
    batch_sizes: list[int]
    pairs: list[int]  # kept pairs in each bucket, over the whole corpus
    # Pairs in buckets with fewer pairs than one batch: under static_shapes a training
    # pipeline drops partial batches, so these never reach training. 0 otherwise.
    unbatched: int


def bucket_report(
    length_counts: Sequence[int],
    config: DataConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
    name: str = "train",
) -> BucketReport:
    """Which buckets `make_dataset(..., input_context, training=training)` fills, from
    `TokenizedPairs.length_counts`; logs a warning when some pairs never make a batch.

    With several input pipelines each holds about 1 / num_input_pipelines of a bucket,
    so a bucket counts as unbatched when it holds fewer pairs than one batch per
    pipeline (an estimate: the shards do not split every bucket exactly evenly).
    """
    lengths = bucket_lengths(config)
    batch_tokens = replica_batch_tokens(config, input_context)
    replicas = replicas_per_pipeline(input_context)
    pipelines = 1 if input_context is None else input_context.num_input_pipelines
    batch_sizes = [replicas * (batch_tokens // length) for length in lengths]
    pairs = [0] * len(lengths)
    for length, count in enumerate(length_counts):
        if count and length > config.max_length:
            raise ValueError(
                f"{name}: {count} pairs have {length} tokens, more than max_length="
                f"{config.max_length}: tokenize them with max_length={config.max_length}"
            )
        if count:
            pairs[bisect.bisect_left(lengths, length)] += count
    # Only static training batches drop partial batches.
    short = [
        index
        for index, (bucket_pairs, batch_size) in enumerate(zip(pairs, batch_sizes, strict=True))
        if config.static_shapes and training and 0 < bucket_pairs < pipelines * batch_size
    ]
    unbatched = sum(pairs[index] for index in short)
    if unbatched:
        logger.warning(
            "%s: %d pairs are in length buckets (%s) with fewer pairs than one static batch: "
            "training never sees them (lower batch_tokens, or raise bucket_growth for fewer, "
            "fuller buckets)",
            name,
            unbatched,
            ", ".join(str(lengths[index]) for index in short),
        )
    return BucketReport(lengths, batch_sizes, pairs, unbatched)


def cache_filename(
    config: DataConfig, name: str, input_context: tf.distribute.InputContext | None = None
) -> str:
    """The file prefix that `make_dataset` caches the `name` dataset of this input
    pipeline to, when config.cache is a file path prefix."""
    pipelines, pipeline_id = (
        (1, 0)
        if input_context is None
        else (input_context.num_input_pipelines, input_context.input_pipeline_id)
    )
    return f"{config.cache}.{name}.shard-{pipeline_id}-of-{pipelines}"


def make_dataset(
    examples: tf.data.Dataset,
    config: DataConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
    initial_step: int = 0,
    name: str | None = None,
) -> tf.data.Dataset:
    """Per-replica batches of `examples` (`TokenizedPairs.dataset`) in the model's format.

    Each batch holds pairs of one length bucket, as many as fit in the token budget:
    batch size * bucket length <= batch_tokens per replica. With `input_context` the
    dataset is this input pipeline's shard, and each bucketed batch is as large as the
    budgets of all the replicas the pipeline feeds: it is split into that many
    consecutive batches of one shape, one per replica, so the replicas of a step always
    get the same shape. Batches are padded to their longest sequence, or with
    config.static_shapes to the bucket length and a batch size of
    `static_batch_shapes`: training then drops partial batches (`bucket_report` counts
    the pairs that never make one), evaluation fills them with padding rows (PAD
    targets: they count zero), so that every pair counts.

    The shard is cached as config.cache says: a file cache needs the dataset's `name`
    ("train", "validation", ...), which names its files (`cache_filename`), so that two
    datasets never read each other's cache. `training` shuffles (seeded; reshuffled each
    epoch); `initial_step`, the step a resumed run starts at, reseeds the shuffle so that
    the run goes on with another order than the one it started with.

    Use with tf.distribute:
        strategy.distribute_datasets_from_function(
            functools.partial(make_dataset, tokenized.dataset, config))
    """
    batch_tokens = replica_batch_tokens(config, input_context)
    replicas = replicas_per_pipeline(input_context)
    examples = pipeline_examples(examples, config, input_context, training, initial_step, name)
    lengths = bucket_lengths(config)
    pad = tf.constant(PAD, tf.int32)
    batches = examples.bucket_by_sequence_length(
        element_length_func=_example_length,
        # A bucket holds the lengths in [boundary i-1, boundary i); padding to the bucket
        # boundary pads to boundary - 1. So boundary = padded length + 1.
        bucket_boundaries=[length + 1 for length in lengths],
        # The bucket past the last boundary stays empty: tokenize_pairs dropped longer pairs.
        bucket_batch_sizes=[replicas * (batch_tokens // length) for length in lengths] + [replicas],
        padding_values=({"encoder_inputs": pad, "decoder_inputs": pad}, pad),
        pad_to_bucket_boundary=config.static_shapes,
        # Evaluation keeps partial batches (filled below): every pair counts.
        drop_remainder=config.static_shapes and training,
    )
    if config.static_shapes and not training:
        # The static batch size of the bucket: the one its padded length gives.
        batches = batches.map(
            lambda features, targets: _fill_rows(
                features, targets, replicas * (batch_tokens // tf.shape(targets)[1])
            )
        )
    elif not config.static_shapes and replicas > 1:
        # A partial batch: as many rows for each replica.
        batches = batches.map(
            lambda features, targets: _fill_rows(
                features, targets, -(-tf.shape(targets)[0] // replicas) * replicas
            )
        )
    return split_among_replicas(batches, replicas).prefetch(tf.data.AUTOTUNE)


def split_among_replicas(batches: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """Each batch of `batches` (any nest of ``[rows, ...]`` tensors, rows a multiple
    of `replicas`) as `replicas` consecutive batches of one shape, one per replica."""
    if replicas == 1:
        return batches
    return batches.flat_map(
        lambda *batch: tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(
                lambda ids: tf.reshape(ids, tf.concat([[replicas, -1], tf.shape(ids)[1:]], 0)),
                batch,
            )
        )
    )


def pipeline_examples(
    examples: tf.data.Dataset,
    config: DataConfig,
    input_context: tf.distribute.InputContext | None,
    training: bool,
    initial_step: int,
    name: str | None,
) -> tf.data.Dataset:
    """This input pipeline's shard of unbatched `examples`, cached as config.cache says
    (`cached_examples`), and for training shuffled with the seed of (config.shuffle_seed,
    `initial_step`), reshuffled every epoch: what every task's batching starts from."""
    if input_context is not None:
        examples = examples.shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id
        )
    examples = cached_examples(examples, config, name, input_context)
    if training:
        examples = examples.shuffle(
            config.shuffle_buffer_size, seed=shuffle_seed_for(config.shuffle_seed, initial_step)
        )
    return examples


def cached_examples(
    examples: tf.data.Dataset,
    config: DataConfig,
    name: str | None,
    input_context: tf.distribute.InputContext | None,
) -> tf.data.Dataset:
    """`examples` cached as config.cache says (in memory, not at all, or in files named
    after `name` and the input pipeline)."""
    if config.cache == "none":
        return examples
    if config.cache == "memory":
        return examples.cache()
    if not name:
        raise ValueError(
            f"cache={config.cache!r} is a file cache: make_dataset needs the dataset's name "
            '(e.g. name="train") to name its files'
        )
    filename = cache_filename(config, name, input_context)
    make_parent_directory(filename)
    return examples.cache(filename)


def shuffle_seed_for(shuffle_seed: int, initial_step: int) -> int:
    """A shuffle seed for each (config seed, step a run starts at), the same in every
    process (Python's hash() of a tuple is not)."""
    if initial_step < 0:
        raise ValueError(f"initial_step must be >= 0, got {initial_step}")
    digest = hashlib.sha256(f"{shuffle_seed}:{initial_step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # a non-negative int64


def _fill_rows(
    features: dict[str, tf.Tensor], targets: tf.Tensor, rows: tf.Tensor
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """The batch with padding rows appended up to `rows`: PAD targets, so they count zero
    in the loss and the metrics. Each starts with EOS (encoder) or BOS (decoder), as a
    real row does, so that no attention row of the model is fully masked: the loss
    weighs these rows zero, but a NaN from a fully masked softmax would survive that."""
    missing = rows - tf.shape(targets)[0]

    def filled(ids: tf.Tensor, first: int) -> tf.Tensor:
        width = tf.shape(ids)[1]
        padding = tf.concat(
            [tf.fill([missing, 1], first), tf.fill([missing, width - 1], PAD)], axis=1
        )
        return tf.concat([ids, padding], axis=0)

    return {
        "encoder_inputs": filled(features["encoder_inputs"], EOS),
        "decoder_inputs": filled(features["decoder_inputs"], BOS),
    }, filled(targets, PAD)


def padded_batches(
    examples: tf.data.Dataset, config: DataConfig, batch_size: int, length: int | None
) -> tf.data.Dataset:
    """Shuffled batches of `batch_size` pairs padded to `length` (None: the batch's
    longest), as keras.io's translation examples batch: the baseline that benchmarks
    compare `make_dataset`'s bucketing with."""
    shapes = ({"encoder_inputs": [length], "decoder_inputs": [length]}, [length])
    return examples.shuffle(config.shuffle_buffer_size, seed=config.shuffle_seed).padded_batch(
        batch_size, padded_shapes=shapes, padding_values=PAD
    )


def _example_length(features: dict[str, tf.Tensor], targets: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.size(features["encoder_inputs"]), tf.size(targets))


def real_token_share(batches: tf.data.Dataset) -> float:
    """Non-PAD tokens / all tokens of encoder_inputs and targets over `batches` of the
    model's format: how little of the compute padding wastes."""

    def count(totals: tf.Tensor, batch) -> tf.Tensor:
        features, targets = batch
        tokens = (features["encoder_inputs"], targets)
        real = sum(tf.math.count_nonzero(ids != PAD) for ids in tokens)
        every = sum(tf.size(ids, tf.int64) for ids in tokens)
        return totals + tf.stack([real, every])

    real, every = batches.reduce(tf.zeros([2], tf.int64), count).numpy()
    return float(real / every)
