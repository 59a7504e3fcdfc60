"""An encoder classifier as a `keras.Model`: the encoder-decoder's encoder (same blocks,
same layer names), pooled over the real tokens or at the first token, then dropout and a
dense head.

``model(token_ids [B, S])`` -> class logits ``[B, num_classes]`` (float32 under any
precision policy). PAD positions are never attended to and never pooled, so extra
padding leaves the logits unchanged.
"""

from __future__ import annotations

import keras
from keras import ops

from tf_transformer.config import ClassifierConfig
from tf_transformer.layers import masks
from tf_transformer.layers.block import EncoderBlock
from tf_transformer.layers.dropout import Dropout
from tf_transformer.layers.embedding import TokenEmbedding
from tf_transformer.layers.positional import PositionalEncoding
from tf_transformer.models.base import TransformerModel


@keras.saving.register_keras_serializable(package="tf_transformer")
class TransformerClassifier(TransformerModel):
    """Bidirectional Transformer blocks over token embeddings, a pooling and a head.

    Args:
        config: a `ClassifierConfig` (or its dict form, as stored by `get_config`).

    Example:
    ```python
    model = TransformerClassifier(ClassifierConfig.preset("tiny", vocab_size=100))
    logits = model(np.array([[7, 8, 3, 0]]))  # [1, 2]
    ```
    """

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig | dict, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        policy = self.dtype_policy
        self.source_embedding = TokenEmbedding(
            config.vocab_size, config.d_model, dtype=policy, name="source_embedding"
        )
        self.position_encoding = PositionalEncoding(
            config.position_encoding, config.max_length, dtype=policy, name="position_encoding"
        )
        self.embedding_dropout = Dropout(config.dropout, dtype=policy)
        self.encoder_blocks = [
            EncoderBlock(**config.block_arguments(), dtype=policy, name=f"encoder_block_{index}")
            for index in range(config.num_layers)
        ]
        self.encoder_final_norm = (
            keras.layers.LayerNormalization(
                epsilon=config.layer_norm_epsilon, dtype=policy, name="encoder_final_norm"
            )
            if config.normalize_first
            else None
        )
        self.head_dropout = Dropout(config.head_dropout, dtype=policy)
        self.head = keras.layers.Dense(config.num_classes, dtype=policy, name="head")

    def build(self, inputs_shape=None):
        sequence_shape = (None, None, self.config.d_model)
        self.source_embedding.build((None, None))
        self.position_encoding.build(sequence_shape)
        for block in self.encoder_blocks:
            block.build(sequence_shape)
        if self.encoder_final_norm is not None:
            self.encoder_final_norm.build(sequence_shape)
        self.head.build((None, self.config.d_model))
        self.built = True

    def pooled(self, token_ids, training=None):
        """``[B, S]`` ids -> ``[B, d_model]``: the pooled encoder outputs."""
        self.check_length(token_ids, "inputs")
        padding_mask = masks.padding_mask(token_ids)
        outputs = self.position_encoding(self.source_embedding(token_ids))
        outputs = self.embedding_dropout(outputs, training=training)
        for block in self.encoder_blocks:
            outputs = block(outputs, padding_mask=padding_mask, training=training)
        if self.encoder_final_norm is not None:
            outputs = self.encoder_final_norm(outputs)
        if self.config.pooling == "first":
            return outputs[:, 0]
        weights = ops.cast(padding_mask, outputs.dtype)[:, :, None]
        return ops.sum(outputs * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def call(self, token_ids, training=None):
        pooled = self.head_dropout(self.pooled(token_ids, training), training=training)
        return ops.cast(self.head(pooled), "float32")
