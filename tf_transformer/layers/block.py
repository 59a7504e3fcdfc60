"""One Transformer block for every model family: self-attention (bidirectional or
causal), optional cross-attention, feed-forward, each inside a `Residual`."""

from __future__ import annotations

import keras
from keras import ops

from tf_transformer.layers import masks
from tf_transformer.layers.attention import CachedOutput, MultiHeadAttention
from tf_transformer.layers.dropout import Dropout
from tf_transformer.layers.feed_forward import FeedForward
from tf_transformer.layers.residual import Residual


@keras.saving.register_keras_serializable(package="tf_transformer")
class TransformerBlock(keras.layers.Layer):
    """Self-attention, then (with `cross_attention`) attention to a source sequence,
    then feed-forward; each sublayer wrapped in dropout + residual + LayerNorm.

    The encoder uses ``causal=False``, the seq2seq decoder ``causal=True,
    cross_attention=True``, a decoder-only language model ``causal=True``. With
    `normalize_first=True` (default) LayerNorm comes before each sublayer (pre-LN,
    stable without warmup tricks); with False after the residual add, as in Vaswani et
    al. (2017). A pre-LN stack needs a final LayerNorm after its last block (the models
    add it).

    Args:
        d_model, num_heads, ffn_dim: sizes; d_model must be divisible by num_heads.
        dropout: on each sublayer's output before the residual add.
        attention_dropout: on the attention probabilities.
        activation: feed-forward activation, "relu" or "gelu".
        normalize_first: pre-LN (True) or post-LN (False).
        layer_norm_epsilon: LayerNormalization epsilon.
        causal: position i attends to positions <= i only.
        cross_attention: add a cross-attention sublayer over `encoder_outputs`.

    Call arguments:
        inputs: ``[B, T, d_model]``.
        encoder_outputs: ``[B, S, d_model]`` (only with `cross_attention`).
        padding_mask: bool ``[B, T]``, True at real tokens; defaults to the Keras mask
            of `inputs` (from a ``mask_zero=True`` embedding), if any.
        encoder_padding_mask: bool ``[B, S]``; defaults to the Keras mask of
            `encoder_outputs`.
        attention_mask: extra bool ``[B, T, T]`` self-attention mask.
        training: whether dropout is active.

    For generation: `project_encoder_key_value` once per sentence (with
    `cross_attention`), then `cached_call` for a prompt (any number of positions at
    once) or one step.

    Example:
    ```python
    block = TransformerBlock(d_model=16, num_heads=4, ffn_dim=32, causal=True)
    outputs = block(np.zeros((2, 5, 16)))  # [2, 5, 16]
    ```
    """

    def __init__(
        self,
        d_model,
        num_heads,
        ffn_dim,
        dropout=0.0,
        attention_dropout=0.0,
        activation="relu",
        normalize_first=True,
        layer_norm_epsilon=1e-6,
        causal=False,
        cross_attention=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.normalize_first = normalize_first
        self.layer_norm_epsilon = layer_norm_epsilon
        self.causal = causal
        self.has_cross_attention = cross_attention
        self.supports_masking = True
        policy = self.dtype_policy

        def norm(name):
            return keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=policy, name=name
            )

        self.residual_dropout = Dropout(dropout, dtype=policy)
        self.self_attention = MultiHeadAttention(
            d_model, num_heads, attention_dropout, dtype=policy, name="self_attention"
        )
        self.attention_norm = norm("self_attention_norm")
        self.feed_forward = FeedForward(d_model, ffn_dim, activation, dtype=policy, name="ffn")
        self.feed_forward_norm = norm("ffn_norm")
        self._self_attention_residual = self._residual(self.attention_norm)
        self._feed_forward_residual = self._residual(self.feed_forward_norm)
        if cross_attention:
            self.cross_attention = MultiHeadAttention(
                d_model, num_heads, attention_dropout, dtype=policy, name="cross_attention"
            )
            self.cross_attention_norm = norm("cross_attention_norm")
            self._cross_attention_residual = self._residual(self.cross_attention_norm)

    def _residual(self, norm):
        return Residual(norm, self.residual_dropout, self.normalize_first)

    def build(self, inputs_shape, encoder_outputs_shape=None):
        self.self_attention.build(inputs_shape)
        self.feed_forward.build(inputs_shape)
        self.attention_norm.build(inputs_shape)
        self.feed_forward_norm.build(inputs_shape)
        if self.has_cross_attention:
            self.cross_attention.build(inputs_shape, encoder_outputs_shape or inputs_shape)
            self.cross_attention_norm.build(inputs_shape)
        self.built = True

    def _self_attention_mask(self, inputs, padding_mask, attention_mask):
        length = ops.shape(inputs)[1]
        if padding_mask is None:
            padding_mask = masks.keras_mask(inputs)
        return masks.merge_masks(
            masks.causal_mask(length) if self.causal else None,
            None
            if padding_mask is None
            else masks.attention_mask_from_padding(length, padding_mask),
            attention_mask,
        )

    def call(
        self,
        inputs,
        encoder_outputs=None,
        padding_mask=None,
        encoder_padding_mask=None,
        attention_mask=None,
        training=None,
    ):
        self_attention_mask = self._self_attention_mask(inputs, padding_mask, attention_mask)
        outputs = self._self_attention_residual(
            inputs,
            lambda x: self.self_attention(x, attention_mask=self_attention_mask, training=training),
            training,
        )
        if self.has_cross_attention:
            if encoder_padding_mask is None:
                encoder_padding_mask = masks.keras_mask(encoder_outputs)
            cross_attention_mask = _cross_attention_mask(outputs, encoder_padding_mask)
            outputs = self._cross_attention_residual(
                outputs,
                lambda x: self.cross_attention(
                    x, encoder_outputs, cross_attention_mask, training=training
                ),
                training,
            )
        return self._feed_forward_residual(
            outputs, lambda x: self.feed_forward(x, training=training), training
        )

    def cross_attention_probabilities(
        self, inputs, encoder_outputs, padding_mask=None, encoder_padding_mask=None
    ):
        """What this block's cross-attention heads attend to: float32 weights
        ``[B, H, T, S]`` over the source positions (inference mode, no dropout)."""
        self_attention_mask = self._self_attention_mask(inputs, padding_mask, None)
        outputs = self._self_attention_residual(
            inputs, lambda x: self.self_attention(x, attention_mask=self_attention_mask), False
        )
        query = self.cross_attention_norm(outputs) if self.normalize_first else outputs
        return self.cross_attention.attention_probabilities(
            query,
            self.cross_attention.project_key_value(encoder_outputs),
            _cross_attention_mask(outputs, encoder_padding_mask),
        )

    def project_encoder_key_value(self, encoder_outputs):
        """``[B, S, d_model] ->`` a `KeyValue` ``[B, H, S, Dh]``, once per sentence."""
        return self.cross_attention.project_key_value(encoder_outputs)

    def cached_call(
        self,
        inputs,
        self_attention_cache,
        cache_index,
        key_padding_mask=None,
        encoder_key_value=None,
        encoder_padding_mask=None,
        beam_slots=None,
    ):
        """Runs positions cache_index..+T of `inputs` ``[B, T, d_model]`` (inference
        only): T is a whole prompt when prefilling, 1 for each generated token.

        `self_attention_cache` (a `KeyValue` ``[B, H, max_length, Dh]``) holds the keys and values
        of earlier positions; the returned cache adds these ones. `key_padding_mask`
        bool ``[B, max_length]`` hides cache positions that hold padding (a
        left-padded prompt); causality hides the positions not yet written.
        `encoder_key_value` (``[B / R, H, S, Dh]`` each) and `encoder_padding_mask`
        ``[B / R, S]`` may have one row per R consecutive rows of `inputs` (the
        hypotheses of one source sentence); `beam_slots` (see
        `MultiHeadAttention.cached_self_attention`) which of those rows hold each
        earlier position's keys and values.
        """
        updated = []

        def attend_to_cache(x):
            attended, cache = self.self_attention.cached_self_attention(
                x, self_attention_cache, cache_index, key_padding_mask, beam_slots
            )
            updated.append(cache)
            return attended

        def attend_to_source(x):
            # The R rows of each source sentence query its keys and values together, as
            # R * T positions: the source's projections are never tiled per hypothesis.
            shape = ops.shape(x)
            grouped = ops.reshape(x, (ops.shape(encoder_key_value.keys)[0], -1, self.d_model))
            attended = self.cross_attention.attend(
                grouped, encoder_key_value, _cross_attention_mask(grouped, encoder_padding_mask)
            )
            return ops.reshape(attended, shape)

        outputs = self._self_attention_residual(inputs, attend_to_cache, False)
        if self.has_cross_attention:
            outputs = self._cross_attention_residual(outputs, attend_to_source, False)
        outputs = self._feed_forward_residual(outputs, self.feed_forward, False)
        return CachedOutput(outputs, updated[0])

    def compute_output_shape(self, inputs_shape, encoder_outputs_shape=None):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "activation": self.activation,
            "normalize_first": self.normalize_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "causal": self.causal,
            "cross_attention": self.has_cross_attention,
        }


def _cross_attention_mask(queries, encoder_padding_mask):
    """Bool ``[B, T, S]`` mask of the real source positions for `queries` ``[B, T, ...]``,
    or None without a padding mask."""
    if encoder_padding_mask is None:
        return None
    return masks.attention_mask_from_padding(ops.shape(queries)[1], encoder_padding_mask)


# Keras names the layers of a list attribute by their class when it saves weights
# (`saving_lib._save_container_state`: "encoder_blocks/encoder_block/..."), so the
# encoder-decoder's blocks keep these two class names: models saved before the blocks
# were one class load unchanged. Each is only a TransformerBlock with its defaults.


@keras.saving.register_keras_serializable(package="tf_transformer")
class EncoderBlock(TransformerBlock):
    """`TransformerBlock` with bidirectional self-attention, no cross-attention."""

    def __init__(self, *args, causal=False, cross_attention=False, **kwargs):
        super().__init__(*args, causal=causal, cross_attention=cross_attention, **kwargs)


@keras.saving.register_keras_serializable(package="tf_transformer")
class DecoderBlock(TransformerBlock):
    """`TransformerBlock` with causal self-attention and cross-attention."""

    def __init__(self, *args, causal=True, cross_attention=True, **kwargs):
        super().__init__(*args, causal=causal, cross_attention=cross_attention, **kwargs)
