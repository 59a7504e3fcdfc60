"""Strings in, strings out: tokenize -> encode -> search -> detokenize."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from tf_transformer.constants import EOS, PAD
from tf_transformer.decoding.search import generate

logger = logging.getLogger(__name__)

# Source lengths are padded up to a multiple of this, so the compiled search is traced
# for a handful of shapes rather than one per sentence length.
LENGTH_QUANTUM = 16


class Translator:
    """Translates sentences with a trained `Seq2SeqTransformer` and its tokenizers.

    Sentences go through in batches of `batch_size` (the last batch padded with empty
    rows, so every call has the same batch dimension); generation is compiled with
    XLA. Output length is at most `2 * source length + 10` tokens, within the
    model's max_length.

    Args:
        model: a trained `Seq2SeqTransformer`.
        source_tokenizer, target_tokenizer: `tensorflow_text.SentencepieceTokenizer`s.
        batch_size: sentences per generation call.
        jit_compile: compile generation with XLA.
    """

    def __init__(self, model, source_tokenizer, target_tokenizer, batch_size=64, jit_compile=True):
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.batch_size = batch_size
        self.max_length = model.config.max_length
        self._generate = tf.function(self._generate_ids, jit_compile=jit_compile)

    def _generate_ids(self, source_ids, max_length):
        return generate(self.model, source_ids, max_length)

    def _source_ids(self, sentences: list[str]) -> np.ndarray:
        """``[batch_size, L]`` source ids + EOS, L a multiple of LENGTH_QUANTUM."""
        pieces = self.source_tokenizer.tokenize(tf.constant(sentences)).to_list()
        longest_allowed = self.max_length - 1
        rows = []
        for sentence, ids in zip(sentences, pieces, strict=True):
            if len(ids) > longest_allowed:
                logger.warning(
                    "Source of %d tokens truncated to model.max_length=%d: %.60s...",
                    len(ids) + 1,
                    self.max_length,
                    sentence,
                )
                ids = ids[:longest_allowed]
            rows.append([*ids, EOS])
        length = min(
            self.max_length,
            LENGTH_QUANTUM * math.ceil(max(map(len, rows)) / LENGTH_QUANTUM),
        )
        source_ids = np.full((self.batch_size, length), PAD, np.int32)
        for row, ids in enumerate(rows):
            source_ids[row, : len(ids)] = ids
        return source_ids

    def _translate_batch(self, sentences: list[str]) -> list[str]:
        source_ids = self._source_ids(sentences)
        max_length = min(self.max_length - 1, 2 * source_ids.shape[1] + 10)
        target_ids = self._generate(tf.constant(source_ids), max_length)[: len(sentences)]
        texts = self.target_tokenizer.detokenize(
            tf.RaggedTensor.from_tensor(target_ids, padding=PAD)
        )
        return [text.decode("utf-8") for text in texts.numpy()]

    def translate_iter(self, sentences: Iterable[str]) -> Iterator[str]:
        """Yields one translation per input sentence, in order; empty in, empty out."""
        batch: list[str] = []
        for sentence in sentences:
            batch.append(sentence)
            if len(batch) == self.batch_size:
                yield from self._translate_with_empties(batch)
                batch = []
        if batch:
            yield from self._translate_with_empties(batch)

    def _translate_with_empties(self, batch: list[str]) -> list[str]:
        non_empty = [sentence for sentence in batch if sentence.strip()]
        translations = iter(self._translate_batch(non_empty) if non_empty else [])
        return [next(translations) if sentence.strip() else "" for sentence in batch]

    def translate(self, sentences: Iterable[str]) -> list[str]:
        return list(self.translate_iter(sentences))
