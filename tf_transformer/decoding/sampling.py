"""Stateless sampling: temperature, top-k and top-p applied to logits, tokens drawn from
a seed tensor, and the loop that draws one token per step (`sample_loop`).

Why not keras_hub's samplers: they take temperature, k and p as Python numbers when
built and draw from a seed *variable* that every draw advances. The SavedModel's `sample`
signature takes those settings per request, and concurrent requests must not share a
random state. Here a draw is a pure function of the logits, the parameters, the batch's
seed and the step, so equal requests give equal samples under any concurrency, and the
Python `Translator` and the SavedModel draw the same tokens. TensorFlow ops rather than
`keras.random`, whose seeds are Python ints or SeedGenerator variables, never a tensor.

Dimension letters: B rows, V vocabulary.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import tensorflow as tf
from keras import ops

from tf_transformer.config import DecodeConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.models.base import position_after


class SamplingParameters(NamedTuple):
    """Sampling settings: Python numbers, or scalar tensors inside a graph."""

    temperature: object  # [] float32: log-probabilities are divided by it; > 0
    top_k: object  # [] int32: draw among the k most likely tokens; 0: no limit
    top_p: object  # [] float32: draw among the fewest tokens whose mass reaches p; 1.0: no limit
    seed: object  # [2] int64: this batch's seed, from `batch_seed`

    @classmethod
    def from_config(cls, decode_config: DecodeConfig, batch_number=0) -> SamplingParameters:
        """The parameters of `decode_config` for its `batch_number`-th batch of a call."""
        return sampling_parameters(
            decode_config.temperature,
            decode_config.top_k,
            decode_config.top_p,
            batch_seed(decode_config.seed, batch_number),
        )


def batch_seed(seed, batch_number=0):
    """The ``[2]`` int64 seed of the `batch_number`-th batch (of decode batch_size
    sentences) of a request sampled with `seed`: batches of one request draw apart, and
    the same request draws the same, however it is split into calls of batch_size."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(batch_number, tf.int64)])


def sampling_parameters(temperature, top_k, top_p, seed) -> SamplingParameters:
    """Checked `SamplingParameters`. Python numbers out of range raise ValueError;
    tensors get assertions that fail the graph with InvalidArgumentError and the same
    message (a SavedModel's inputs are only known when it runs)."""
    values = (temperature, top_k, top_p)
    if all(isinstance(value, numbers.Number) for value in values):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no limit), got {top_k!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        return SamplingParameters(temperature, top_k, top_p, seed)
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    top_p = tf.convert_to_tensor(top_p, tf.float32)
    checks = [
        tf.debugging.assert_greater(temperature, 0.0, message="temperature must be > 0"),
        tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: no limit)"),
        tf.debugging.Assert(
            tf.logical_and(top_p > 0.0, top_p <= 1.0),
            ["top_p must be in (0, 1], got", top_p],
        ),
    ]
    with tf.control_dependencies(checks):
        return SamplingParameters(
            tf.identity(temperature), tf.identity(top_k), tf.identity(top_p), seed
        )


def sample_next_tokens(logits, parameters: SamplingParameters, step):
    """Tokens ``[B]`` int32 drawn from `logits` ``[B, V]`` at decoding step `step`.

    The log-probabilities are divided by the temperature, restricted to the top_k most
    likely tokens, then to the fewest of those whose (renormalised) probability mass
    reaches top_p, and a token is drawn with `tf.random.stateless_categorical` from the
    batch's seed folded with `step`. A row's draw depends on its position in the batch,
    not on the rows after it.
    """
    temperature, top_k, top_p, seed = parameters
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1) / temperature  # [B, V]
    vocab_size = tf.shape(log_probs)[-1]
    sorted_log_probs, sorted_tokens = tf.math.top_k(log_probs, k=vocab_size)  # [B, V]
    ranks = tf.range(vocab_size)[None, :]  # [1, V]
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    in_top_k = ranks < tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    sorted_log_probs = tf.where(in_top_k, sorted_log_probs, float("-inf"))
    mass_before = tf.math.cumsum(tf.nn.softmax(sorted_log_probs), axis=-1, exclusive=True)
    # top_p 1.0 keeps every token, even where rounding lifts the mass before it to 1.
    in_top_p = tf.logical_or(mass_before < top_p, top_p >= 1.0)  # the first always stays
    kept_log_probs = tf.where(in_top_p, sorted_log_probs, float("-inf"))  # [B, V]
    step_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int32))
    choices = tf.random.stateless_categorical(kept_log_probs, 1, step_seed, dtype=tf.int32)
    return tf.gather(sorted_tokens, choices[:, 0], batch_dims=1)  # [B]


def sample_loop(
    next_logits,
    cache,
    batch_size,
    max_length,
    sampling: SamplingParameters,
    first_tokens=None,
    start_index=0,
):
    """Draws one token per step for each row until every row has drawn EOS or
    `max_length` tokens are drawn. ``-> [B, max_length]`` int32 (EOS kept, PAD after).

    keras_hub's samplers would draw from a seed variable (see above); this loop draws
    step `index`'s tokens from the batch seed folded with `index`, so a row's tokens
    depend only on its logits, its row number and the seed.

    Args:
        next_logits: as `beam_search` takes it: ``(token_ids [B], cache, index) ->
            (logits [B, V], cache)``.
        cache: any nest of ``[B, ...]`` tensors.
        batch_size: B, a Python int or scalar tensor.
        max_length: most tokens drawn, EOS included.
        sampling: the settings and the batch's seed.
        first_tokens: ``[B]`` tokens the samples continue (default BOS), at model
            position `start_index`.
    """
    if first_tokens is None:
        first_tokens = ops.full((batch_size,), BOS, "int32")
    tokens = ops.pad(
        ops.cast(first_tokens, "int32")[:, None], ((0, 0), (0, max_length))
    )  # [B, L + 1]
    finished = ops.zeros((batch_size,), "bool")

    def unfinished(index, tokens, finished, cache):
        return ops.logical_not(ops.all(finished))

    def step(index, tokens, finished, cache):
        logits, cache = next_logits(
            ops.take(tokens, index, axis=1), cache, position_after(start_index, index)
        )  # [B, V]
        next_tokens = ops.cast(sample_next_tokens(logits, sampling, index), "int32")  # [B]
        next_tokens = ops.where(finished, PAD, next_tokens)
        position_is_next = ops.arange(max_length + 1) == index + 1  # [L + 1]
        tokens = ops.where(position_is_next[None, :], next_tokens[:, None], tokens)
        finished = ops.logical_or(finished, ops.equal(next_tokens, EOS))
        return index + 1, tokens, finished, cache

    state = (ops.convert_to_tensor(0, "int32"), tokens, finished, cache)
    _, tokens, _, _ = ops.while_loop(unfinished, step, state, maximum_iterations=max_length)
    return tokens[:, 1:]
