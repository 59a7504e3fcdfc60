"""tf.data input pipeline: string pairs -> padded batches in the model's format.

Two stages, so that tokenization happens once and its losses are counted before training:

1. `tokenize_pairs`: tokenize batches of sentences in-graph, add EOS / BOS, count and
   drop pairs with an empty side or longer than max_length (the counts are logged and
   returned, never silent), cache.
2. `make_dataset`: shard per input pipeline, shuffle, bucket by length under a token
   budget per batch, pad, prefetch. Pass it (partially applied) to
   `strategy.distribute_datasets_from_function`.

Batch format, the model's contract:
    ({"encoder_inputs": int32 [B, S], "decoder_inputs": int32 [B, T]}, targets int32 [B, T])
with encoder_inputs = source ids + EOS, decoder_inputs = BOS + target ids,
targets = target ids + EOS, padded with PAD.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from tf_transformer.config import DataConfig
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


def tokenize_pairs(
    pairs: tf.data.Dataset,
    source_tokenizer: tf_text.SentencepieceTokenizer,
    target_tokenizer: tf_text.SentencepieceTokenizer,
    max_length: int,
    *,
    cache: bool = True,
    name: str = "pairs",
) -> TokenizedPairs:
    """Tokenizes (source, target) string pairs, adds EOS / BOS, and drops the pairs with an
    empty side or a side longer than `max_length` tokens (special ids included).

    Works on batches of sentences (one tokenizer call per batch). A first pass over the
    data, here, tokenizes it to count what is dropped; the first epoch tokenizes it again
    and, with `cache`, keeps the examples in memory so later epochs read token ids. Pass
    `cache=False` for corpora too large for memory.
    """

    def tokenize_batch(source_text: tf.Tensor, target_text: tf.Tensor):
        source_ids = source_tokenizer.tokenize(source_text)  # [batch, (source length)]
        target_ids = target_tokenizer.tokenize(target_text)  # [batch, (target length)]
        source_lengths, target_lengths = source_ids.row_lengths(), target_ids.row_lengths()
        empty = (source_lengths == 0) | (target_lengths == 0)
        # + 1 for the EOS of encoder_inputs and targets, the BOS of decoder_inputs.
        too_long = ~empty & (tf.maximum(source_lengths, target_lengths) + 1 > max_length)
        kept = ~empty & ~too_long
        counts = tf.stack([tf.math.count_nonzero(flags) for flags in (kept, empty, too_long)])
        source_ids = tf.ragged.boolean_mask(source_ids, kept)
        target_ids = tf.ragged.boolean_mask(target_ids, kept)
        special = tf.ones([tf.shape(source_ids)[0], 1], tf.int32)
        features = {
            "encoder_inputs": tf.concat([source_ids, special * EOS], axis=1),
            "decoder_inputs": tf.concat([special * BOS, target_ids], axis=1),
        }
        return features, tf.concat([target_ids, special * EOS], axis=1), counts

    batches = pairs.batch(TOKENIZE_BATCH_SIZE).map(
        tokenize_batch, num_parallel_calls=tf.data.AUTOTUNE
    )
    totals = batches.reduce(tf.zeros([3], tf.int64), lambda totals, batch: totals + batch[2])
    report = FilterReport(*(int(total) for total in totals.numpy()))
    message = "%s: kept %d pairs; dropped %d with an empty side and %d longer than %d tokens"
    log = logger.warning if report.dropped_empty or report.dropped_too_long else logger.info
    log(message, name, report.kept, report.dropped_empty, report.dropped_too_long, max_length)

    examples = batches.map(lambda features, targets, counts: (features, targets)).unbatch()
    # Unbatched ragged rows have rank-0-ragged specs; an element map makes them plain
    # tensors, which padded_batch needs.
    examples = examples.map(lambda features, targets: (features, targets))
    # Cache unbatched examples, not ragged batches: unbatching ragged rows every epoch would
    # cost more than all the rest of make_dataset.
    return TokenizedPairs(examples.cache() if cache else examples, report)


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


def static_batch_shapes(
    config: DataConfig, input_context: tf.distribute.InputContext | None = None
) -> list[tuple[int, int]]:
    """Every (batch size, length) that `make_dataset` yields when config.static_shapes:
    encoder_inputs, decoder_inputs and targets of a batch all have that shape."""
    batch_tokens = replica_batch_tokens(config, input_context)
    return [(batch_tokens // length, length) for length in bucket_lengths(config)]


def make_dataset(
    examples: tf.data.Dataset,
    config: DataConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool = True,
) -> tf.data.Dataset:
    """Batches of `examples` (`TokenizedPairs.dataset`) in the model's format.

    Each batch holds pairs of one length bucket, as many as fit in the token budget:
    batch size * bucket length <= batch_tokens (per replica when `input_context` is given;
    the dataset is then this input pipeline's shard). Batches are padded to their longest
    sequence, or with config.static_shapes to the bucket length, dropping partial batches
    when `training`. `training` also shuffles (seeded; reshuffled each epoch).

    Use with tf.distribute:
        strategy.distribute_datasets_from_function(
            functools.partial(make_dataset, tokenized.dataset, config))
    """
    batch_tokens = replica_batch_tokens(config, input_context)
    if input_context is not None:
        examples = examples.shard(
            input_context.num_input_pipelines, input_context.input_pipeline_id
        )
    if training:
        examples = examples.shuffle(config.shuffle_buffer_size, seed=config.shuffle_seed)
    lengths = bucket_lengths(config)
    pad = tf.constant(PAD, tf.int32)
    batches = examples.bucket_by_sequence_length(
        element_length_func=_example_length,
        # A bucket holds the lengths in [boundary i-1, boundary i); padding to the bucket
        # boundary pads to boundary - 1. So boundary = padded length + 1.
        bucket_boundaries=[length + 1 for length in lengths],
        # The bucket past the last boundary stays empty: tokenize_pairs dropped longer pairs.
        bucket_batch_sizes=[batch_tokens // length for length in lengths] + [1],
        padding_values=({"encoder_inputs": pad, "decoder_inputs": pad}, pad),
        pad_to_bucket_boundary=config.static_shapes,
        # Evaluation keeps partial batches (smaller batch dimension): every pair counts.
        drop_remainder=config.static_shapes and training,
    )
    return batches.prefetch(tf.data.AUTOTUNE)


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
