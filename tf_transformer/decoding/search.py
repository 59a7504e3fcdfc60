"""Token generation with the model's fixed-size key/value cache.

Greedy and sampling use keras_hub's samplers, driven by a `next(prompt, cache,
index)` callable over `Seq2SeqTransformer.decode_step`; shapes are static, so the
whole search compiles with XLA.
"""

from __future__ import annotations

import keras_hub
from keras import ops

from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.layers.masks import padding_mask


def _next_token_logits(model):
    """Adapts `decode_step` to keras_hub's sampler protocol: the logits for position
    `index` come from the token at `index - 1`."""

    def next_fn(prompt, cache, index):
        step = model.decode_step(prompt[:, index - 1], cache, index - 1)
        return step.logits, None, step.cache

    return next_fn


def strip_after_eos(token_ids):
    """Replaces the first EOS and everything after it by PAD. ``[B, T] -> [B, T]``."""
    seen_eos = ops.cumsum(ops.cast(ops.equal(token_ids, EOS), "int32"), axis=1) > 0
    return ops.where(seen_eos, ops.zeros_like(token_ids) + PAD, token_ids)


def generate(model, encoder_inputs, max_length: int, sampler=None):
    """Target ids ``[B, max_length]`` (no BOS, EOS and after it PAD) for source ids
    ``[B, S]``. `sampler` is a keras_hub sampler; greedy by default."""
    sampler = sampler or keras_hub.samplers.GreedySampler()
    encoder_outputs = model.encode(encoder_inputs, training=False)
    cache = model.initial_cache(encoder_outputs, padding_mask(encoder_inputs), max_length + 1)
    batch_size = ops.shape(encoder_inputs)[0]
    prompt = ops.pad(ops.full((batch_size, 1), BOS, "int32"), ((0, 0), (0, max_length)))
    prompt_mask = ops.equal(ops.arange(max_length + 1), 0)[None, :]
    tokens = sampler(
        _next_token_logits(model),
        prompt,
        cache=cache,
        index=1,
        mask=ops.broadcast_to(prompt_mask, ops.shape(prompt)),
        stop_token_ids=(EOS,),
    )
    return strip_after_eos(tokens[:, 1:])
