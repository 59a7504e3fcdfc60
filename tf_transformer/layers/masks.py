"""Attention masks as small pure functions.

Convention: a mask is boolean and True where attention is allowed. Padding masks are
``[batch, length]``; attention masks are ``[batch, query_length, key_length]``.
"""

from __future__ import annotations

from keras import ops

from tf_transformer.constants import PAD


def padding_mask(token_ids, pad_id: int = PAD):
    """True for real tokens, False for padding. ``[B, T] ids -> [B, T] bool``."""
    return ops.not_equal(token_ids, pad_id)


def causal_mask(query_length, key_length=None, query_offset=0):
    """Lower-triangular mask: query i may attend to keys 0..i. ``-> [1, Tq, Tk] bool``.

    `query_offset` is the position of the first query, for a block of queries that
    continues a cached prefix (query i then sees keys 0..query_offset + i).
    """
    key_length = query_length if key_length is None else key_length
    query_positions = ops.arange(query_length)[:, None] + query_offset
    key_positions = ops.arange(key_length)[None, :]
    return ops.expand_dims(ops.greater_equal(query_positions, key_positions), 0)


def attention_mask_from_padding(query_length, key_padding_mask):
    """Lets every query see every real key. ``[B, Tk] bool -> [B, Tq, Tk] bool``."""
    key_padding_mask = ops.cast(key_padding_mask, "bool")
    batch_size, key_length = ops.shape(key_padding_mask)[0], ops.shape(key_padding_mask)[1]
    return ops.broadcast_to(key_padding_mask[:, None, :], (batch_size, query_length, key_length))


def merge_masks(*masks):
    """Logical AND of the masks that are not None (broadcasting); None if all are."""
    present = [ops.cast(mask, "bool") for mask in masks if mask is not None]
    if not present:
        return None
    merged = present[0]
    for mask in present[1:]:
        merged = ops.logical_and(merged, mask)
    return merged


def keras_mask(tensor):
    """The Keras mask (from a ``mask_zero=True`` embedding) carried by `tensor`, or None."""
    return getattr(tensor, "_keras_mask", None)
