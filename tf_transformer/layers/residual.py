"""The residual connection around a sublayer, pre-LN or post-LN, written once."""

from __future__ import annotations


class Residual:
    """``inputs + dropout(sublayer(norm(inputs)))`` (pre-LN) or
    ``norm(inputs + dropout(sublayer(inputs)))`` (post-LN, Vaswani et al., 2017).

    A plain callable, not a Keras layer: the norm and dropout stay attributes of the
    block that owns them, so weight paths (and checkpoints saved before this wrapper
    existed) are unchanged.

    Args:
        norm: the LayerNormalization of this sublayer.
        dropout: the dropout applied to the sublayer's output.
        normalize_first: pre-LN (True) or post-LN (False).

    Call arguments:
        inputs: ``[B, T, d_model]``.
        sublayer: ``[B, T, d_model] -> [B, T, d_model]``.
        training: whether dropout is active.
    """

    def __init__(self, norm, dropout, normalize_first: bool):
        self.norm = norm
        self.dropout = dropout
        self.normalize_first = normalize_first

    def __call__(self, inputs, sublayer, training=None):
        if self.normalize_first:
            return inputs + self.dropout(sublayer(self.norm(inputs)), training=training)
        return self.norm(inputs + self.dropout(sublayer(inputs), training=training))
