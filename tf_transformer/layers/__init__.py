"""Keras layers of the Transformer, each usable on its own in a functional model."""

from tf_transformer.layers.attention import CachedOutput, KeyValue, MultiHeadAttention
from tf_transformer.layers.block import TransformerBlock
from tf_transformer.layers.embedding import TokenEmbedding
from tf_transformer.layers.feed_forward import FeedForward
from tf_transformer.layers.positional import PositionalEncoding
from tf_transformer.layers.residual import Residual

__all__ = [
    "CachedOutput",
    "FeedForward",
    "KeyValue",
    "MultiHeadAttention",
    "PositionalEncoding",
    "Residual",
    "TokenEmbedding",
    "TransformerBlock",
]
