"""One Transformer encoder block: self-attention and feed-forward, each residual."""

from __future__ import annotations

import keras

from tf_transformer.layers import masks
from tf_transformer.layers.attention import MultiHeadAttention
from tf_transformer.layers.dropout import Dropout
from tf_transformer.layers.feed_forward import FeedForward


@keras.saving.register_keras_serializable(package="tf_transformer")
class EncoderBlock(keras.layers.Layer):
    """Self-attention then feed-forward, each wrapped in dropout + residual + LayerNorm.

    With `normalize_first=True` (default) LayerNorm comes before each sublayer
    (pre-LN, stable without warmup tricks); with False it comes after the residual
    add, as in Vaswani et al. (2017). A pre-LN stack needs a final LayerNorm after
    its last block (the model adds it).

    Args:
        d_model, num_heads, ffn_dim: sizes; d_model must be divisible by num_heads.
        dropout: on each sublayer's output before the residual add.
        attention_dropout: on the attention probabilities.
        activation: feed-forward activation, "relu" or "gelu".
        normalize_first: pre-LN (True) or post-LN (False).
        layer_norm_epsilon: LayerNormalization epsilon.

    Call arguments:
        inputs: ``[B, T, d_model]``.
        padding_mask: bool ``[B, T]``, True at real tokens. Defaults to the Keras
            mask of `inputs` (from a ``mask_zero=True`` embedding), if any.
        attention_mask: bool ``[B, T, T]``, combined with the padding mask.
        training: whether dropout is active.

    Example:
    ```python
    block = EncoderBlock(d_model=16, num_heads=4, ffn_dim=32)
    outputs = block(np.zeros((2, 5, 16)), padding_mask=np.array([[1, 1, 1, 0, 0]] * 2))
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
        self.supports_masking = True
        policy = self.dtype_policy
        self.self_attention = MultiHeadAttention(
            d_model, num_heads, attention_dropout, dtype=policy, name="self_attention"
        )
        self.feed_forward = FeedForward(d_model, ffn_dim, activation, dtype=policy, name="ffn")
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="self_attention_norm"
        )
        self.feed_forward_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="ffn_norm"
        )
        self.residual_dropout = Dropout(dropout, dtype=policy)

    def build(self, inputs_shape):
        self.self_attention.build(inputs_shape)
        self.feed_forward.build(inputs_shape)
        self.attention_norm.build(inputs_shape)
        self.feed_forward_norm.build(inputs_shape)
        self.built = True

    def residual(self, inputs, sublayer, norm, training):
        """inputs + dropout(sublayer(inputs)), with LayerNorm before or after."""
        if self.normalize_first:
            return inputs + self.residual_dropout(sublayer(norm(inputs)), training=training)
        return norm(inputs + self.residual_dropout(sublayer(inputs), training=training))

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None):
        if padding_mask is None:
            padding_mask = masks.keras_mask(inputs)
        if padding_mask is not None:
            padding_mask = masks.attention_mask_from_padding(
                keras.ops.shape(inputs)[1], padding_mask
            )
        self_attention_mask = masks.merge_masks(padding_mask, attention_mask)
        outputs = self.residual(
            inputs,
            lambda x: self.self_attention(x, attention_mask=self_attention_mask, training=training),
            self.attention_norm,
            training,
        )
        return self.residual(
            outputs,
            lambda x: self.feed_forward(x, training=training),
            self.feed_forward_norm,
            training,
        )

    def compute_output_shape(self, inputs_shape):
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
        }
