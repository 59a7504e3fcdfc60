"""The encoder-decoder Transformer as a `keras.Model`.

Training: ``model({"encoder_inputs": [B, S], "decoder_inputs": [B, T]})`` -> logits
``[B, T, target_vocab_size]`` (float32 under any precision policy). Generation (the
interface of `models.base`): `start_generation` encodes the source and projects its
cross-attention keys/values once; each step then runs `decode_step`.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_transformer.config import ModelConfig
from tf_transformer.constants import BOS
from tf_transformer.layers import masks
from tf_transformer.layers.block import DecoderBlock, EncoderBlock
from tf_transformer.layers.dropout import Dropout
from tf_transformer.layers.embedding import TokenEmbedding
from tf_transformer.layers.positional import PositionalEncoding
from tf_transformer.models.base import GenerationStart, TransformerModel


class DecoderCache(NamedTuple):
    """Everything a decode step needs about earlier steps and the source.

    The self-attention cache has one row per hypothesis (R per source sentence, R = 1
    for greedy search, K beams for beam search); the source's keys and values and its
    mask one row per sentence, shared by its hypotheses. `beam_slots` (optional) says
    which row of its sentence's R holds each earlier position of a hypothesis
    (`MultiHeadAttention.cached_self_attention`): a beam search reorders only these.
    """

    self_attention: tuple  # per layer: KeyValue, each [B * R, H, max_length, Dh]
    cross_attention: tuple  # per layer: KeyValue, each [B, H, S, Dh]
    encoder_padding_mask: object  # [B, S] bool
    beam_slots: object = None  # [B * R, max_length] int32, in 0..R-1


class DecodeStep(NamedTuple):
    logits: object  # [B, target_vocab_size] float32
    cache: DecoderCache


@keras.saving.register_keras_serializable(package="tf_transformer")
class Seq2SeqTransformer(TransformerModel):
    """Encoder-decoder Transformer (Vaswani et al., 2017) for token ids with PAD=0.

    Args:
        config: a `ModelConfig` (or its dict form, as stored by `get_config`).

    Example:
    ```python
    model = Seq2SeqTransformer(ModelConfig.preset("tiny", source_vocab_size=100,
                                                  target_vocab_size=100))
    logits = model({"encoder_inputs": np.array([[5, 6, 3]]),
                    "decoder_inputs": np.array([[2, 7]])})  # [1, 2, 100]
    ```
    """

    config_class = ModelConfig

    def __init__(self, config: ModelConfig | dict, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        policy = self.dtype_policy
        self.target_embedding = TokenEmbedding(
            config.target_vocab_size,
            config.d_model,
            tie_output=config.tie_output_embeddings,
            dtype=policy,
            name="target_embedding",
        )
        self.source_embedding = (
            self.target_embedding
            if config.share_embeddings
            else TokenEmbedding(
                config.source_vocab_size, config.d_model, dtype=policy, name="source_embedding"
            )
        )
        self.position_encoding = PositionalEncoding(
            config.position_encoding, config.max_length, dtype=policy, name="position_encoding"
        )
        # Learned positions are not shared between source and target.
        self.target_position_encoding = (
            self.position_encoding
            if config.position_encoding == "sinusoidal"
            else PositionalEncoding(
                "learned", config.max_length, dtype=policy, name="target_position_encoding"
            )
        )
        self.embedding_dropout = Dropout(config.dropout, dtype=policy)
        block_arguments = dict(config.block_arguments(), dtype=policy)
        self.encoder_blocks = [
            EncoderBlock(**block_arguments, name=f"encoder_block_{index}")
            for index in range(config.num_encoder_layers)
        ]
        self.decoder_blocks = [
            DecoderBlock(**block_arguments, name=f"decoder_block_{index}")
            for index in range(config.num_decoder_layers)
        ]
        # Pre-LN stacks end in a LayerNorm; post-LN blocks already normalize last.
        self.encoder_final_norm = self.decoder_final_norm = None
        if config.normalize_first:
            self.encoder_final_norm = keras.layers.LayerNormalization(
                epsilon=config.layer_norm_epsilon, dtype=policy, name="encoder_final_norm"
            )
            self.decoder_final_norm = keras.layers.LayerNormalization(
                epsilon=config.layer_norm_epsilon, dtype=policy, name="decoder_final_norm"
            )

    def build(self, inputs_shape=None):
        sequence_shape = (None, None, self.config.d_model)
        # Shared embeddings and sinusoidal tables appear twice in this list.
        for layer, shape in (
            (self.source_embedding, (None, None)),
            (self.target_embedding, (None, None)),
            (self.position_encoding, sequence_shape),
            (self.target_position_encoding, sequence_shape),
        ):
            if not layer.built:
                layer.build(shape)
        for block in self.encoder_blocks:
            block.build(sequence_shape)
        for block in self.decoder_blocks:
            block.build(sequence_shape, sequence_shape)
        for norm in (self.encoder_final_norm, self.decoder_final_norm):
            if norm is not None:
                norm.build(sequence_shape)
        self.built = True

    def _embed(self, token_ids, embedding, position_encoding, start_index=0, training=None):
        embedded = position_encoding(embedding(token_ids), start_index=start_index)
        return self.embedding_dropout(embedded, training=training)

    def encode(self, encoder_inputs, training=None):
        """``[B, S]`` ids -> ``[B, S, d_model]`` encoder outputs."""
        self.check_length(encoder_inputs, "encoder_inputs")
        padding_mask = masks.padding_mask(encoder_inputs)
        outputs = self._embed(
            encoder_inputs, self.source_embedding, self.position_encoding, training=training
        )
        for block in self.encoder_blocks:
            outputs = block(outputs, padding_mask=padding_mask, training=training)
        if self.encoder_final_norm is not None:
            outputs = self.encoder_final_norm(outputs)
        return outputs

    def _logits(self, decoder_outputs):
        if self.decoder_final_norm is not None:
            decoder_outputs = self.decoder_final_norm(decoder_outputs)
        return ops.cast(self.target_embedding.logits(decoder_outputs), "float32")

    def decode(self, decoder_inputs, encoder_outputs, encoder_padding_mask, training=None):
        """Teacher-forced decoder: ``[B, T]`` ids -> ``[B, T, vocab]`` float32 logits."""
        outputs = self._embed_target(decoder_inputs, training)
        padding_mask = masks.padding_mask(decoder_inputs)
        for block in self.decoder_blocks:
            outputs = block(
                outputs,
                encoder_outputs,
                padding_mask=padding_mask,
                encoder_padding_mask=encoder_padding_mask,
                training=training,
            )
        return self._logits(outputs)

    def _embed_target(self, decoder_inputs, training=None):
        self.check_length(decoder_inputs, "decoder_inputs")
        return self._embed(
            decoder_inputs, self.target_embedding, self.target_position_encoding, training=training
        )

    def cross_attention_weights(self, encoder_inputs, decoder_inputs):
        """Per decoder block, the cross-attention weights ``[B, H, T, S]`` (float32)
        of teacher-forced `decoder_inputs` ``[B, T]`` (BOS + target ids) over the
        source `encoder_inputs` ``[B, S]``: the attention maps to plot."""
        if not self.built:
            self.build()
        encoder_outputs = self.encode(encoder_inputs, training=False)
        encoder_padding_mask = masks.padding_mask(encoder_inputs)
        padding_mask = masks.padding_mask(decoder_inputs)
        outputs = self._embed_target(decoder_inputs, training=False)
        weights = []
        for block in self.decoder_blocks:
            weights.append(
                block.cross_attention_probabilities(
                    outputs, encoder_outputs, padding_mask, encoder_padding_mask
                )
            )
            outputs = block(
                outputs,
                encoder_outputs,
                padding_mask=padding_mask,
                encoder_padding_mask=encoder_padding_mask,
                training=False,
            )
        return weights

    def call(self, inputs, training=None):
        encoder_inputs = inputs["encoder_inputs"]
        encoder_outputs = self.encode(encoder_inputs, training=training)
        return self.decode(
            inputs["decoder_inputs"],
            encoder_outputs,
            masks.padding_mask(encoder_inputs),
            training=training,
        )

    def initial_cache(self, encoder_outputs, encoder_padding_mask, max_length=None):
        """An empty self-attention cache for `max_length` steps (default
        config.max_length) and the cross-attention keys/values of the source."""
        if max_length is None:
            max_length = self.config.max_length
        empty = self.empty_self_attention_cache(ops.shape(encoder_outputs)[0], max_length)
        return DecoderCache(
            self_attention=tuple(empty for _ in self.decoder_blocks),
            cross_attention=tuple(
                block.project_encoder_key_value(encoder_outputs) for block in self.decoder_blocks
            ),
            encoder_padding_mask=ops.cast(encoder_padding_mask, "bool"),
        )

    def decode_step(self, token_ids, cache: DecoderCache, index) -> DecodeStep:
        """Logits for the token after `token_ids` ``[B * R]`` (R consecutive rows per
        source sentence) placed at position `index`."""
        outputs = self._embed(
            token_ids[:, None],
            self.target_embedding,
            self.target_position_encoding,
            start_index=index,
            training=False,
        )
        beam_slots = cache.beam_slots
        if beam_slots is not None:  # [B * R, L] -> [B, R, L]
            sentences = ops.shape(cache.encoder_padding_mask)[0]
            beam_slots = ops.reshape(beam_slots, (sentences, -1, ops.shape(beam_slots)[1]))
        updated_self_attention = []
        for block, layer_cache, encoder_key_value in zip(
            self.decoder_blocks, cache.self_attention, cache.cross_attention, strict=True
        ):
            outputs, layer_cache = block.cached_call(
                outputs,
                layer_cache,
                index,
                encoder_key_value=encoder_key_value,
                encoder_padding_mask=cache.encoder_padding_mask,
                beam_slots=beam_slots,
            )
            updated_self_attention.append(layer_cache)
        logits = self._logits(outputs)[:, 0]  # [B, vocab]
        return DecodeStep(logits, cache._replace(self_attention=tuple(updated_self_attention)))

    def start_generation(self, encoder_inputs, max_new_tokens, use_cache: bool = True):
        """Encodes source ids ``[B, S]`` once; the search starts from BOS at position 0.

        The search carries the self-attention cache and its beam slots; the source's
        keys and values stay in `next_logits`'s closure, one copy per sentence whatever
        the number of hypotheses (never tiled per beam, never reordered). Reordering
        beams (`reorder_cache`) moves only their slot numbers: each hypothesis keeps
        writing its keys and values into its own row and reads its history through
        the slots. `select_sentences` keeps some sentences of the batch and drops the
        others' rows, for a search to go on with the unfinished ones alone.

        `use_cache=False` gives the naive decoder instead: every step re-runs the
        decoder over the whole fixed-length prefix (the causal mask hides the PAD
        tail). It is only for measuring what the cache saves; it gives the same tokens.
        """
        encoder_outputs = self.encode(encoder_inputs, training=False)
        encoder_padding_mask = masks.padding_mask(encoder_inputs)
        batch_size = ops.shape(encoder_inputs)[0]
        if use_cache:
            cache = self.initial_cache(encoder_outputs, encoder_padding_mask, max_new_tokens)
            beam_slots = ops.zeros((batch_size, max_new_tokens), "int32")
            return self._cached_generation(
                cache._replace(self_attention=None), (cache.self_attention, beam_slots)
            )

        def uncached_next_logits(token_ids, prefix, index):
            prefix = ops.slice_update(prefix, (0, index), ops.cast(token_ids, "int32")[:, None])
            hypotheses_per_source = ops.shape(prefix)[0] // batch_size
            logits = self.decode(
                prefix,
                ops.repeat(encoder_outputs, hypotheses_per_source, axis=0),
                ops.repeat(encoder_padding_mask, hypotheses_per_source, axis=0),
            )
            return ops.take(logits, index, axis=1), prefix  # [B * R, V]

        prefix = ops.zeros((batch_size, max_new_tokens + 1), "int32")
        return GenerationStart(
            ops.full((batch_size,), BOS, "int32"), 0, prefix, uncached_next_logits
        )

    def _cached_generation(self, source: DecoderCache, carried) -> GenerationStart:
        """The cached search of the sentences whose source keys, values and mask are in
        `source`, from the carried ``(self-attention cache, beam slots)`` of their
        hypotheses (R rows per sentence)."""
        batch_size = ops.shape(source.encoder_padding_mask)[0]

        def next_logits(token_ids, carried, index):
            self_attention, beam_slots = carried
            step = self.decode_step(
                token_ids,
                source._replace(self_attention=self_attention, beam_slots=beam_slots),
                index,
            )
            return step.logits, (step.cache.self_attention, beam_slots)

        def reorder_cache(carried, parent_rows, index):
            """Row r of the B * R hypotheses continues row `parent_rows[r]` of its
            sentence, whose keys and values up to `index` stay where they are."""
            self_attention, beam_slots = carried
            rows_per_sentence = ops.shape(beam_slots)[0] // batch_size
            written_now = ops.arange(ops.shape(beam_slots)[1]) == index  # [L]
            beam_slots = ops.where(
                written_now[None, :],
                (parent_rows % rows_per_sentence)[:, None],
                ops.take(beam_slots, parent_rows, axis=0),
            )
            return self_attention, beam_slots

        def select_sentences(carried, sentences):
            """Only `sentences` ``[B2]``: their rows of every cache tensor."""
            rows_per_sentence = ops.shape(carried[1])[0] // batch_size
            rows = ops.reshape(
                sentences[:, None] * rows_per_sentence
                + ops.arange(rows_per_sentence, dtype="int32")[None, :],
                (-1,),
            )
            return self._cached_generation(
                source._replace(
                    cross_attention=keras.tree.map_structure(
                        lambda tensor: ops.take(tensor, sentences, axis=0), source.cross_attention
                    ),
                    encoder_padding_mask=ops.take(source.encoder_padding_mask, sentences, axis=0),
                ),
                keras.tree.map_structure(lambda tensor: ops.take(tensor, rows, axis=0), carried),
            )

        return GenerationStart(
            ops.full((batch_size,), BOS, "int32"),
            0,
            carried,
            next_logits,
            reorder_cache,
            select_sentences,
        )

    def continuation_logits(self, encoder_inputs, tokens):
        """Teacher-forced logits ``[B, T, V]`` of target `tokens` ``[B, T]`` (no BOS)."""
        batch_size = ops.shape(tokens)[0]
        decoder_inputs = ops.concatenate(
            [ops.full((batch_size, 1), BOS, "int32"), ops.cast(tokens, "int32")[:, :-1]], axis=1
        )
        return self({"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs})
