"""Models assembled from tf_transformer.layers."""

from tf_transformer.models.seq2seq import DecoderCache, DecodeStep, Seq2SeqTransformer

__all__ = ["DecodeStep", "DecoderCache", "Seq2SeqTransformer"]
