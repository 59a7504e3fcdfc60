"""A decoder-only Transformer language model (GPT-style) as a `keras.Model`.

Training: ``model(token_ids [B, T])`` -> next-token logits ``[B, T, vocab_size]``
(float32 under any precision policy), on packed sequences without padding. A batch of
left-padded prompts goes in as ``{"token_ids": [B, T], "padding_mask": [B, T]}``: each
row's positions then start at its first real token, and padding is never attended to.
Generation (the interface of `models.base`): `start_generation` prefills the prompts
into the key/value cache in one pass; each step then runs one position.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_transformer.config import LanguageModelConfig
from tf_transformer.constants import PAD
from tf_transformer.layers.block import TransformerBlock
from tf_transformer.layers.dropout import Dropout
from tf_transformer.layers.embedding import TokenEmbedding
from tf_transformer.layers.positional import PositionalEncoding
from tf_transformer.models.base import GenerationStart, TransformerModel


class LanguageModelCache(NamedTuple):
    """Everything a generation step needs about earlier positions; batch on axis 0."""

    self_attention: tuple  # per block: KeyValue, each [B, H, cache_length, Dh]
    key_padding_mask: object  # [B, cache_length] bool: False at each row's left padding
    pad_counts: object  # [B] int32: left padding of each row


def left_padding_positions(padding_mask):
    """Position of each token ``[B, T]`` int32 counted from its row's first real token
    (0 on the padding before it)."""
    counts = ops.cumsum(ops.cast(padding_mask, "int32"), axis=1)
    return ops.maximum(counts - 1, 0)


@keras.saving.register_keras_serializable(package="tf_transformer")
class TransformerLanguageModel(TransformerModel):
    """Causal Transformer blocks (no cross-attention) over tied token embeddings.

    Args:
        config: a `LanguageModelConfig` (or its dict form, as stored by `get_config`).

    Example:
    ```python
    model = TransformerLanguageModel(LanguageModelConfig.preset("tiny", vocab_size=100))
    logits = model(np.array([[2, 7, 8]]))  # [1, 3, 100]
    ```
    """

    config_class = LanguageModelConfig

    def __init__(self, config: LanguageModelConfig | dict, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        policy = self.dtype_policy
        self.token_embedding = TokenEmbedding(
            config.vocab_size,
            config.d_model,
            tie_output=config.tie_output_embeddings,
            dtype=policy,
            name="token_embedding",
        )
        self.position_encoding = PositionalEncoding(
            config.position_encoding, config.max_length, dtype=policy, name="position_encoding"
        )
        self.embedding_dropout = Dropout(config.dropout, dtype=policy)
        self.blocks = [
            TransformerBlock(
                **config.block_arguments(), causal=True, dtype=policy, name=f"block_{index}"
            )
            for index in range(config.num_layers)
        ]
        # Pre-LN stacks end in a LayerNorm; post-LN blocks already normalize last.
        self.final_norm = None
        if config.normalize_first:
            self.final_norm = keras.layers.LayerNormalization(
                epsilon=config.layer_norm_epsilon, dtype=policy, name="final_norm"
            )

    def build(self, inputs_shape=None):
        sequence_shape = (None, None, self.config.d_model)
        self.token_embedding.build((None, None))
        self.position_encoding.build(sequence_shape)
        for block in self.blocks:
            block.build(sequence_shape)
        if self.final_norm is not None:
            self.final_norm.build(sequence_shape)
        self.built = True

    def _embed(self, token_ids, positions=None, start_index=0, training=None):
        embedded = self.position_encoding(
            self.token_embedding(token_ids), start_index=start_index, positions=positions
        )
        return self.embedding_dropout(embedded, training=training)

    def _logits(self, outputs):
        if self.final_norm is not None:
            outputs = self.final_norm(outputs)
        return ops.cast(self.token_embedding.logits(outputs), "float32")

    def call(self, inputs, training=None):
        padding_mask = positions = None
        if isinstance(inputs, dict):
            token_ids, padding_mask = inputs["token_ids"], inputs.get("padding_mask")
        else:
            token_ids = inputs
        self.check_length(token_ids, "token_ids")
        if padding_mask is not None:
            positions = left_padding_positions(padding_mask)
        outputs = self._embed(token_ids, positions, training=training)
        for block in self.blocks:
            outputs = block(outputs, padding_mask=padding_mask, training=training)
        return self._logits(outputs)

    def start_generation(self, prompt_ids, max_new_tokens, use_cache: bool = True):
        """Prefills left-padded prompts ``[B, P]`` (PAD before each prompt) into a cache of
        P + max_new_tokens positions in one pass; the search starts from each prompt's
        last token at position P - 1 (the step rewrites its keys and values, the same
        ones)."""
        if not use_cache:
            raise ValueError("the language model always generates with its cache")
        prompt_ids = ops.cast(prompt_ids, "int32")
        batch_size, prompt_length = ops.shape(prompt_ids)[0], ops.shape(prompt_ids)[1]
        prompt_mask = ops.not_equal(prompt_ids, PAD)
        pad_counts = prompt_length - ops.sum(ops.cast(prompt_mask, "int32"), axis=1)  # [B]
        cache_length = prompt_length + max_new_tokens
        key_padding_mask = ops.arange(cache_length)[None, :] >= pad_counts[:, None]
        outputs = self._embed(prompt_ids, left_padding_positions(prompt_mask), training=False)
        caches = []
        for block in self.blocks:
            outputs, cache = block.cached_call(
                outputs,
                self.empty_self_attention_cache(batch_size, cache_length),
                0,
                key_padding_mask=key_padding_mask,
            )
            caches.append(cache)
        cache = LanguageModelCache(tuple(caches), key_padding_mask, pad_counts)
        return GenerationStart(prompt_ids[:, -1], prompt_length - 1, cache, self.next_token_logits)

    def next_token_logits(self, token_ids, cache: LanguageModelCache, index):
        """Logits ``[B, V]`` of the token after `token_ids` ``[B]``, which sit at cache
        position `index`, and the cache with their keys and values."""
        positions = (index - cache.pad_counts)[:, None]  # [B, 1]
        outputs = self._embed(token_ids[:, None], positions, training=False)
        updated = []
        for block, layer_cache in zip(self.blocks, cache.self_attention, strict=True):
            outputs, layer_cache = block.cached_call(
                outputs, layer_cache, index, key_padding_mask=cache.key_padding_mask
            )
            updated.append(layer_cache)
        logits = self._logits(outputs)[:, 0]
        return logits, cache._replace(self_attention=tuple(updated))

    def continuation_logits(self, prompt_ids, tokens):
        """Logits ``[B, T, V]`` of `tokens` ``[B, T]`` after left-padded prompts
        ``[B, P]``, from one full forward pass."""
        sequence = ops.concatenate(
            [ops.cast(prompt_ids, "int32"), ops.cast(tokens, "int32")[:, :-1]], axis=1
        )
        logits = self({"token_ids": sequence, "padding_mask": ops.not_equal(sequence, PAD)})
        return logits[:, ops.shape(prompt_ids)[1] - 1 :]
