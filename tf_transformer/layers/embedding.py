"""Token embeddings scaled by sqrt(d_model), usable in reverse as the output projection."""

from __future__ import annotations

import math

import keras
from keras import ops

from tf_transformer.constants import PAD


@keras.saving.register_keras_serializable(package="tf_transformer")
class TokenEmbedding(keras.layers.Layer):
    """Embeds token ids and multiplies by sqrt(d_model) (Vaswani et al., 2017, 3.4).

    Wraps `keras.layers.ReversibleEmbedding`, whose reverse call gives the tied
    output projection (`logits`). Weights start at N(0, d_model^-0.5), so the scaled
    embeddings have unit variance and the tied logits start small.

    Args:
        vocab_size: number of token ids.
        d_model: embedding width.
        tie_output: use the transposed embedding matrix as the output projection;
            False learns a separate projection matrix.
        mask_zero: emit a Keras mask that is False at PAD positions, for use in
            functional models.

    Example:
    ```python
    embedding = TokenEmbedding(vocab_size=100, d_model=16, mask_zero=True)
    vectors = embedding(np.array([[5, 6, 0]]))  # [1, 3, 16], mask [[True, True, False]]
    logits = embedding.logits(vectors)  # [1, 3, 100]
    ```
    """

    def __init__(self, vocab_size, d_model, tie_output=True, mask_zero=False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.tie_output = tie_output
        self.mask_zero = mask_zero
        self.supports_masking = mask_zero
        self.embedding = keras.layers.ReversibleEmbedding(
            vocab_size,
            d_model,
            tie_weights=tie_output,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=d_model**-0.5),
            dtype=self.dtype_policy,
            name="embedding",
        )

    def build(self, input_shape=None):
        self.embedding.build(input_shape)
        self.built = True

    def call(self, token_ids):
        return self.embedding(token_ids) * ops.cast(math.sqrt(self.d_model), self.compute_dtype)

    def logits(self, hidden_states):
        """Projects ``[..., d_model]`` hidden states to ``[..., vocab_size]`` logits."""
        return self.embedding(hidden_states, reverse=True)

    def compute_mask(self, token_ids, mask=None):
        return ops.not_equal(token_ids, PAD) if self.mask_zero else None

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.d_model)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "tie_output": self.tie_output,
            "mask_zero": self.mask_zero,
        }
