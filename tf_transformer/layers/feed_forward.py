"""Position-wise feed-forward network: Dense(ffn_dim, activation) -> Dense(d_model)."""

from __future__ import annotations

import keras

from tf_transformer.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="tf_transformer")
class FeedForward(keras.layers.Layer):
    """Two dense layers applied to every position independently (Vaswani et al., 3.3).

    Args:
        d_model: input and output width.
        ffn_dim: inner width.
        activation: "relu" or "gelu".
        dropout: dropout on the inner activations during training.

    Example:
    ```python
    FeedForward(d_model=16, ffn_dim=64)(np.zeros((2, 5, 16)))  # [2, 5, 16]
    ```
    """

    def __init__(self, d_model, ffn_dim, activation="relu", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.d_model = d_model
        self.ffn_dim = ffn_dim
        self.activation = activation
        self.dropout = dropout
        self.supports_masking = True
        self.inner = keras.layers.Dense(
            ffn_dim, activation=activation, dtype=self.dtype_policy, name="inner"
        )
        self.inner_dropout = Dropout(dropout, dtype=self.dtype_policy)
        self.outer = keras.layers.Dense(d_model, dtype=self.dtype_policy, name="outer")

    def build(self, inputs_shape):
        self.inner.build(inputs_shape)
        self.outer.build((*inputs_shape[:-1], self.ffn_dim))
        self.built = True

    def call(self, inputs, training=None):
        return self.outer(self.inner_dropout(self.inner(inputs), training=training))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "ffn_dim": self.ffn_dim,
            "activation": self.activation,
            "dropout": self.dropout,
        }
