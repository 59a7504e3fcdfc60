"""tf_transformer: raw parallel text to a served Transformer translation model."""

__version__ = "0.1.0"
