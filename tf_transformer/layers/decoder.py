"""One Transformer decoder block: causal self-attention, cross-attention, feed-forward."""

from __future__ import annotations

import keras
from keras import ops

from tf_transformer.layers import masks
from tf_transformer.layers.attention import CachedOutput, MultiHeadAttention
from tf_transformer.layers.encoder import EncoderBlock


@keras.saving.register_keras_serializable(package="tf_transformer")
class DecoderBlock(EncoderBlock):
    """An EncoderBlock whose self-attention is causal, plus cross-attention to the
    encoder output between self-attention and feed-forward.

    Takes the same arguments as `EncoderBlock`.

    Call arguments:
        inputs: decoder sequence ``[B, T, d_model]``.
        encoder_outputs: ``[B, S, d_model]``.
        padding_mask: bool ``[B, T]``; defaults to the Keras mask of `inputs`.
        encoder_padding_mask: bool ``[B, S]``; defaults to the Keras mask of
            `encoder_outputs`.
        attention_mask: extra bool ``[B, T, T]`` self-attention mask, combined with
            the causal and padding masks.
        training: whether dropout is active.

    For generation, `project_encoder_key_value` once per sentence and then
    `cached_call` once per step.

    Example:
    ```python
    block = DecoderBlock(d_model=16, num_heads=4, ffn_dim=32)
    outputs = block(np.zeros((2, 3, 16)), np.zeros((2, 5, 16)))  # [2, 3, 16]
    ```
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        policy = self.dtype_policy
        self.cross_attention = MultiHeadAttention(
            self.d_model,
            self.num_heads,
            self.attention_dropout,
            dtype=policy,
            name="cross_attention",
        )
        self.cross_attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="cross_attention_norm"
        )

    def build(self, inputs_shape, encoder_outputs_shape=None):
        super().build(inputs_shape)
        encoder_outputs_shape = encoder_outputs_shape or inputs_shape
        self.cross_attention.build(inputs_shape, encoder_outputs_shape)
        self.cross_attention_norm.build(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        encoder_outputs,
        padding_mask=None,
        encoder_padding_mask=None,
        attention_mask=None,
        training=None,
    ):
        outputs = self._self_attention_sublayer(inputs, padding_mask, attention_mask, training)
        if encoder_padding_mask is None:
            encoder_padding_mask = masks.keras_mask(encoder_outputs)
        return self._cross_attention_and_feed_forward(
            outputs,
            lambda x, mask: self.cross_attention(x, encoder_outputs, mask, training=training),
            encoder_padding_mask,
            training,
        )

    def _self_attention_sublayer(self, inputs, padding_mask, attention_mask, training):
        length = ops.shape(inputs)[1]
        if padding_mask is None:
            padding_mask = masks.keras_mask(inputs)
        self_attention_mask = masks.merge_masks(
            masks.causal_mask(length),
            None
            if padding_mask is None
            else masks.attention_mask_from_padding(length, padding_mask),
            attention_mask,
        )
        return self.residual(
            inputs,
            lambda x: self.self_attention(x, attention_mask=self_attention_mask, training=training),
            self.attention_norm,
            training,
        )

    def cross_attention_probabilities(
        self, inputs, encoder_outputs, padding_mask=None, encoder_padding_mask=None
    ):
        """What this block's cross-attention heads attend to: float32 weights
        ``[B, H, T, S]`` over the source positions (inference mode, no dropout)."""
        outputs = self._self_attention_sublayer(inputs, padding_mask, None, training=False)
        query = self.cross_attention_norm(outputs) if self.normalize_first else outputs
        return self.cross_attention.attention_probabilities(
            query,
            self.cross_attention.project_key_value(encoder_outputs),
            _cross_attention_mask(outputs, encoder_padding_mask),
        )

    def _cross_attention_and_feed_forward(
        self, inputs, cross_attend, encoder_padding_mask, training
    ):
        """`cross_attend(queries, attention_mask)` attends to the encoder output."""
        cross_attention_mask = _cross_attention_mask(inputs, encoder_padding_mask)
        outputs = self.residual(
            inputs,
            lambda x: cross_attend(x, cross_attention_mask),
            self.cross_attention_norm,
            training,
        )
        return self.residual(
            outputs,
            lambda x: self.feed_forward(x, training=training),
            self.feed_forward_norm,
            training,
        )

    def project_encoder_key_value(self, encoder_outputs):
        """``[B, S, d_model] -> [B, 2, S, H, Dh]``, computed once per sentence."""
        return self.cross_attention.project_key_value(encoder_outputs)

    def cached_call(
        self, inputs, self_attention_cache, cache_index, encoder_key_value, encoder_padding_mask
    ):
        """Runs positions cache_index..+T of `inputs` ``[B, T, d_model]`` (inference only).

        `self_attention_cache` ``[B, 2, max_length, H, Dh]`` holds the keys and
        values of earlier positions; the returned cache adds these ones.
        """
        normalized = self.attention_norm(inputs) if self.normalize_first else inputs
        attended, self_attention_cache = self.self_attention.cached_self_attention(
            normalized, self_attention_cache, cache_index
        )
        outputs = inputs + attended
        if not self.normalize_first:
            outputs = self.attention_norm(outputs)
        outputs = self._cross_attention_and_feed_forward(
            outputs,
            lambda x, mask: self.cross_attention.attend(x, encoder_key_value, mask),
            encoder_padding_mask,
            training=False,
        )
        return CachedOutput(outputs, self_attention_cache)

    def compute_output_shape(self, inputs_shape, encoder_outputs_shape=None):
        return inputs_shape


def _cross_attention_mask(queries, encoder_padding_mask):
    """Bool ``[B, T, S]`` mask of the real source positions for `queries` ``[B, T, ...]``,
    or None without a padding mask."""
    if encoder_padding_mask is None:
        return None
    return masks.attention_mask_from_padding(ops.shape(queries)[1], encoder_padding_mask)
