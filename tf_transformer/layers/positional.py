"""Position information added to token embeddings: sinusoidal or learned."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
from keras import ops


def sinusoid_table(max_length: int, d_model: int, max_wavelength: float = 10000.0) -> np.ndarray:
    """``[max_length, d_model]`` float32: sin on even dims, cos on odd (Vaswani et al., 3.5)."""
    positions = np.arange(max_length, dtype=np.float64)[:, None]
    frequencies = max_wavelength ** (-2.0 * (np.arange(d_model) // 2) / d_model)
    angles = positions * frequencies[None, :]
    table = np.where(np.arange(d_model) % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="tf_transformer")
class PositionalEncoding(keras.layers.Layer):
    """Adds position vectors to ``[B, T, d_model]`` embeddings, keeping their Keras mask.

    `kind="sinusoidal"` uses a fixed table computed once in float64 and stored in
    float32. (keras_hub's `SinePositionEncoding` computes angles in the compute dtype,
    so under `mixed_bfloat16` positions past 256 collide; a table avoids that and
    is a single gather per call.) `kind="learned"` uses keras_hub's `PositionEmbedding`.

    Args:
        kind: "sinusoidal" or "learned".
        max_length: number of positions available.

    Call arguments:
        embeddings: ``[B, T, d_model]``.
        start_index: position of the first step (int or scalar tensor), for cached
            decoding one step at a time.
        positions: int ``[B, T]`` position of each token, instead of `start_index`
            (rows of a left-padded batch start at different positions).
    """

    def __init__(self, kind="sinusoidal", max_length=256, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"kind must be 'sinusoidal' or 'learned', got {kind!r}")
        self.kind = kind
        self.max_length = max_length
        self.supports_masking = True
        self.learned = None
        if kind == "learned":
            self.learned = keras_hub.layers.PositionEmbedding(
                max_length, dtype=self.dtype_policy, name="position_embedding"
            )

    def build(self, embeddings_shape):
        if self.learned is not None:
            self.learned.build(embeddings_shape)
        else:
            self.table = sinusoid_table(self.max_length, embeddings_shape[-1])
        self.built = True

    def call(self, embeddings, start_index=0, positions=None):
        if self.learned is not None:
            positions = self.learned(embeddings, start_index=start_index, positions=positions)
        elif positions is not None:
            positions = ops.take(ops.convert_to_tensor(self.table), positions, axis=0)
        else:
            length, d_model = ops.shape(embeddings)[1], ops.shape(embeddings)[2]
            positions = ops.slice(
                ops.convert_to_tensor(self.table), (start_index, 0), (length, d_model)
            )
        return embeddings + ops.cast(positions, embeddings.dtype)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "max_length": self.max_length}
