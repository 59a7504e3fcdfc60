"""Models assembled from tf_transformer.layers, sharing `models.base.TransformerModel`."""

from tf_transformer.models.base import GenerationStart, TransformerModel
from tf_transformer.models.classifier import TransformerClassifier
from tf_transformer.models.language_model import TransformerLanguageModel
from tf_transformer.models.seq2seq import DecoderCache, DecodeStep, Seq2SeqTransformer

__all__ = [
    "DecodeStep",
    "DecoderCache",
    "GenerationStart",
    "Seq2SeqTransformer",
    "TransformerClassifier",
    "TransformerLanguageModel",
    "TransformerModel",
]
