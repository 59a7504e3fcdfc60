"""Keras layers of the Transformer, each usable on its own in a functional model."""

from tf_transformer.layers.attention import CachedOutput, MultiHeadAttention
from tf_transformer.layers.decoder import DecoderBlock
from tf_transformer.layers.embedding import TokenEmbedding
from tf_transformer.layers.encoder import EncoderBlock
from tf_transformer.layers.feed_forward import FeedForward
from tf_transformer.layers.positional import PositionalEncoding

__all__ = [
    "CachedOutput",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "MultiHeadAttention",
    "PositionalEncoding",
    "TokenEmbedding",
]
