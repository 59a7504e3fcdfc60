"""Multi-head attention with a fixed-size key/value cache for incremental decoding.

Why our own layer rather than `keras.layers.MultiHeadAttention` or keras_hub's
`CachedMultiHeadAttention`: self-attention projects queries, keys and values with one
matmul; the cache holds per layer a keys and a values tensor ``[B, H, T, Dh]``
(`KeyValue`), heads first so that each step's attention reads every head's keys
contiguously, and two tensors rather than one stacked, so that no step copies a half
out of the stack for its matmuls; beam search never moves
it (its beams read one another's rows through slot numbers, `beam_slots`);
cross-attention projects the encoder output once per sentence instead of once per step;
masks are boolean, without Keras's implicit mask plumbing.
(`keras.ops.dot_product_attention` has no dropout on the attention
probabilities, so the two einsums are spelled out here.)

Dimension letters: B batch, T query length, S key length, H heads, Dh head width.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_transformer.layers import masks
from tf_transformer.layers.dropout import Dropout


class KeyValue(NamedTuple):
    """Projected keys and values of a sequence, heads first: a decoding cache.

    Two tensors, not one stacked ``[B, 2, H, S, Dh]``: XLA does not hoist a slice of a
    loop-carried or loop-invariant tensor out of a while loop, so a stacked cache cost
    a copy of each half at every step."""

    keys: object  # [B, H, S, Dh]
    values: object  # [B, H, S, Dh]


class CachedOutput(NamedTuple):
    """Result of a cached step: its outputs and the updated cache."""

    outputs: object  # [B, T, d_model]
    cache: KeyValue  # each [B, H, max_length, Dh]


@keras.saving.register_keras_serializable(package="tf_transformer")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention over `num_heads` heads of width d_model // num_heads.

    Args:
        d_model: width of queries, keys, values and the output.
        num_heads: number of heads; must divide d_model.
        dropout: dropout rate on the attention probabilities during training.

    Call arguments:
        query: ``[B, T, d_model]``.
        source: ``[B, S, d_model]`` sequence to attend to; None means `query`
            (self-attention).
        attention_mask: bool ``[B, T, S]``, True where attention is allowed.
        training: whether dropout is active.

    Example:
    ```python
    attention = MultiHeadAttention(d_model=16, num_heads=4)
    outputs = attention(np.zeros((2, 5, 16)), attention_mask=causal_mask(5))  # [2, 5, 16]
    ```
    """

    def __init__(self, d_model, num_heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={d_model} "
                f"and num_heads={num_heads}"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.supports_masking = True
        self.query_projection = keras.layers.Dense(
            d_model, dtype=self.dtype_policy, name="query_projection"
        )
        self.key_value_projection = keras.layers.Dense(
            2 * d_model, dtype=self.dtype_policy, name="key_value_projection"
        )
        self.output_projection = keras.layers.Dense(
            d_model, dtype=self.dtype_policy, name="output_projection"
        )
        self.probability_dropout = Dropout(dropout, dtype=self.dtype_policy)

    def build(self, query_shape, source_shape=None):
        source_shape = query_shape if source_shape is None else source_shape
        self.query_projection.build(query_shape)
        self.key_value_projection.build(source_shape)
        self.output_projection.build((*query_shape[:-1], self.d_model))
        self.built = True

    def _key_value_heads(self, key_value):
        """``[B, S, 2 * d_model]`` projections -> keys and values, each ``[B, S, H, Dh]``.

        Training attends to these strided views directly; only the decoding caches
        are laid out heads first, ``[B, H, S, Dh]`` (`project_key_value`,
        `cached_self_attention`), where per-step attention wants each head's keys and
        values contiguous. Transposing every training projection into that layout slowed the
        training step (BENCHMARKS.md, "Measurements behind the code").
        """
        batch_size, length = ops.shape(key_value)[0], ops.shape(key_value)[1]
        key_value = ops.reshape(key_value, (batch_size, length, 2, self.num_heads, self.head_dim))
        return key_value[:, :, 0], key_value[:, :, 1]

    def _split_query_heads(self, query):
        """``[B, T, d_model]`` projections -> ``[B, T, H, Dh]``."""
        batch_size, query_length = ops.shape(query)[0], ops.shape(query)[1]
        return ops.reshape(query, (batch_size, query_length, self.num_heads, self.head_dim))

    def _query_heads(self, query):
        """``[B, T, d_model] -> [B, T, H, Dh]`` projected queries."""
        return self._split_query_heads(self.query_projection(query))

    def project_key_value(self, source) -> KeyValue:
        """``[B, S, d_model] ->`` keys and values ``[B, H, S, Dh]`` of `source`."""
        return _heads_first(*self._key_value_heads(self.key_value_projection(source)))

    def _project_self_attention(self, inputs):
        """Queries, keys and values ``[B, T, H, Dh]`` of `inputs`
        from one ``d_model x 3 d_model`` matmul with the query and key/value kernels
        side by side, instead of two narrower ones (the weights stay separate, so
        checkpoints are unchanged). A quantized model (`model.quantize`) keeps int8
        kernels with their scales, which only the layers themselves apply: then the
        two projections run as layers."""
        if self.query_projection.quantization_mode is not None:
            return (
                self._query_heads(inputs),
                *self._key_value_heads(self.key_value_projection(inputs)),
            )
        kernel = ops.concatenate(
            [self.query_projection.kernel, self.key_value_projection.kernel], axis=1
        )
        bias = ops.concatenate([self.query_projection.bias, self.key_value_projection.bias])
        projected = ops.matmul(inputs, ops.cast(kernel, inputs.dtype)) + ops.cast(
            bias, inputs.dtype
        )
        query, key_value = projected[..., : self.d_model], projected[..., self.d_model :]
        return (self._split_query_heads(query), *self._key_value_heads(key_value))

    def _probabilities(self, query_heads, keys, attention_mask, keys_equation="bshd"):
        """Softmax attention weights ``[B, H, T, S]`` in float32, even under mixed precision,
        of queries ``[B, T, H, Dh]`` over keys laid out as `keys_equation` says
        (``[B, S, H, Dh]``, or ``[B, H, S, Dh]`` from a cache).

        The queries are scaled by 1/sqrt(Dh) before Q·K, not the scores after: under
        float16 the unscaled product of large activations overflows (max 65,504), and the
        product stays in the compute dtype (a float32 matmul would leave the fast path).
        """
        query_heads = query_heads * ops.cast(self.head_dim**-0.5, query_heads.dtype)
        scores = ops.einsum(f"bthd,{keys_equation}->bhts", query_heads, keys)
        scores = ops.cast(scores, "float32")
        if attention_mask is not None:
            scores = ops.where(ops.expand_dims(attention_mask, 1), scores, -1e9)
        return ops.softmax(scores, axis=-1)

    def attention_probabilities(self, query, key_value, attention_mask=None):
        """Attention weights ``[B, H, T, S]`` (float32, no dropout) of `query`
        ``[B, T, d_model]`` over a projected `KeyValue`: for inspecting and plotting
        what the model attends to."""
        return self._probabilities(self._query_heads(query), key_value.keys, attention_mask, "bhsd")

    def _attend_heads(
        self, query_heads, keys, values, attention_mask, training, keys_equation="bshd"
    ):
        """Attention of projected queries ``[B, T, H, Dh]`` over projected `keys` and
        `values` ``[B, S, H, Dh]`` (or ``[B, H, S, Dh]``: `keys_equation` "bhsd"),
        through the output projection: ``[B, T, d_model]``."""
        probabilities = self._probabilities(query_heads, keys, attention_mask, keys_equation)
        probabilities = ops.cast(probabilities, query_heads.dtype)
        probabilities = self.probability_dropout(probabilities, training=training)
        outputs = ops.einsum(f"bhts,{keys_equation}->bthd", probabilities, values)
        batch_size, query_length = ops.shape(query_heads)[0], ops.shape(query_heads)[1]
        outputs = ops.reshape(outputs, (batch_size, query_length, self.d_model))
        return self.output_projection(outputs)

    def attend(self, query, key_value, attention_mask=None, training=None):
        """Attends `query` ``[B, T, d_model]`` to a projected `KeyValue`."""
        return self._attend_heads(
            self._query_heads(query),
            key_value.keys,
            key_value.values,
            attention_mask,
            training,
            keys_equation="bhsd",
        )

    def call(self, query, source=None, attention_mask=None, training=None):
        if source is None:
            query_heads, keys, values = self._project_self_attention(query)
        else:
            query_heads = self._query_heads(query)
            keys, values = self._key_value_heads(self.key_value_projection(source))
        return self._attend_heads(query_heads, keys, values, attention_mask, training)

    def cached_self_attention(
        self, query, cache, cache_index, key_padding_mask=None, beam_slots=None
    ):
        """Self-attention for `query` ``[B, T, d_model]`` at positions cache_index..+T.

        Writes these positions' keys and values into `cache` (a `KeyValue`, each ``[B,
        H, max_length, Dh]``) at `cache_index` (in place, static shapes) and attends
        causally to every position filled so far, except those `key_padding_mask`
        (bool ``[B, max_length]``, optional) marks False.

        `beam_slots` (int32 ``[B / R, R, max_length]``, one position per row: T = 1)
        lets the R consecutive rows of each sentence (its beams) read their history
        from one another's rows: position s < cache_index of row r is in row
        ``beam_slots[., r, s]`` of its group, the position written now in its own. A
        beam search then reorders only these slot numbers, never the cache.
        """
        query_length = ops.shape(query)[1]
        query_heads, keys, values = self._project_self_attention(query)
        written = _heads_first(keys, values)
        cache = KeyValue(
            *(
                ops.slice_update(cached, (0, 0, cache_index, 0), ops.cast(new, cached.dtype))
                for cached, new in zip(cache, written, strict=True)
            )
        )
        if beam_slots is not None:
            return CachedOutput(
                self._attend_beam_slots(query_heads, cache, cache_index, beam_slots), cache
            )
        max_length = ops.shape(cache.keys)[2]
        visible = masks.causal_mask(query_length, max_length, query_offset=cache_index)
        if key_padding_mask is not None:
            visible = ops.logical_and(visible, ops.cast(key_padding_mask, "bool")[:, None, :])
        outputs = self._attend_heads(
            query_heads, cache.keys, cache.values, visible, False, keys_equation="bhsd"
        )
        return CachedOutput(outputs, cache)

    def _attend_beam_slots(self, query_heads, cache, cache_index, beam_slots):
        """`cached_self_attention`'s attention with `beam_slots`, for queries ``[B, 1,
        H, Dh]``: every row's keys and values meet the R queries of its group (row b
        and head h stay the matmuls' leading batch dimensions, as the cache lies, so
        XLA moves no cache bytes), and a mask keeps each query's own history. R times
        the arithmetic of plain attention, which for a few beams costs far less than
        gathering the whole cache at every step."""
        groups, rows_per_group, max_length = ops.shape(beam_slots)
        heads, head_dim = self.num_heads, self.head_dim
        queries = ops.reshape(
            query_heads * ops.cast(head_dim**-0.5, query_heads.dtype),
            (groups, 1, rows_per_group, heads, head_dim),
        )
        queries = ops.transpose(queries, (0, 1, 3, 2, 4))  # [G, 1, H, R (queries), Dh]
        queries = ops.reshape(
            ops.broadcast_to(queries, (groups, rows_per_group, heads, rows_per_group, head_dim)),
            (groups * rows_per_group, heads, rows_per_group, head_dim),
        )  # [B, H, R, Dh]: row b meets its group's queries
        scores = ops.einsum("bhqd,bhsd->bhqs", queries, cache.keys)
        scores = ops.reshape(
            ops.cast(scores, "float32"),
            (groups, rows_per_group, heads, rows_per_group, max_length),
        )  # [G, R (rows holding keys), H, R (queries), L]
        positions = ops.arange(max_length, dtype="int32")  # [L]
        slots = ops.arange(rows_per_group, dtype="int32")  # [R]
        source_slots = ops.where(
            positions[None, None, :] == cache_index,
            slots[None, :, None],
            ops.cast(beam_slots, "int32"),
        )  # [G, R (queries), L]: the row holding each position of each query's history
        visible = ops.logical_and(
            ops.equal(source_slots[:, None, :, :], slots[None, :, None, None]),
            positions <= cache_index,
        )  # [G, R (rows), R (queries), L]
        scores = ops.where(visible[:, :, None], scores, -1e9)
        # Softmax over the rows and positions together.
        scores = ops.exp(scores - ops.max(scores, axis=(1, 4), keepdims=True))
        probabilities = scores / ops.sum(scores, axis=(1, 4), keepdims=True)
        probabilities = ops.reshape(
            ops.cast(probabilities, query_heads.dtype),
            (groups * rows_per_group, heads, rows_per_group, max_length),
        )
        outputs = ops.einsum("bhqs,bhsd->bhqd", probabilities, cache.values)
        outputs = ops.sum(
            ops.reshape(outputs, (groups, rows_per_group, heads, rows_per_group, head_dim)),
            axis=1,
        )  # [G, H, R (queries), Dh]
        outputs = ops.transpose(outputs, (0, 2, 1, 3))
        return self.output_projection(
            ops.reshape(outputs, (groups * rows_per_group, 1, self.d_model))
        )

    def compute_output_shape(self, query_shape, source_shape=None):
        return query_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
        }


def _heads_first(keys, values) -> KeyValue:
    """Keys and values ``[B, S, H, Dh]`` -> each ``[B, H, S, Dh]``."""
    return KeyValue(ops.transpose(keys, (0, 2, 1, 3)), ops.transpose(values, (0, 2, 1, 3)))
