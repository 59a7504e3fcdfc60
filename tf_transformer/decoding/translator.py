"""Strings in, strings out: tokenize -> encode -> search -> detokenize."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import DecodeConfig
from tf_transformer.constants import EOS, PAD
from tf_transformer.data.tokenizer import load_tokenizers
from tf_transformer.decoding.search import search
from tf_transformer.models import Seq2SeqTransformer

logger = logging.getLogger(__name__)

# Source lengths are padded up to a multiple of this, so the compiled search is traced
# for a handful of shapes rather than one per sentence length.
LENGTH_QUANTUM = 16


class Hypothesis(NamedTuple):
    text: str
    score: float  # length-penalised log-probability (beam) or log-probability


class Translator:
    """Translates sentences with a trained `Seq2SeqTransformer` and its tokenizers.

    Sentences go through in batches of `decode_config.batch_size` (the last batch padded
    with empty rows, so every call has the same batch dimension); the search is compiled
    with XLA. Empty lines give empty translations; sources longer than the model's
    max_length are truncated with a warning.

    Args:
        model: a trained `Seq2SeqTransformer`.
        source_tokenizer, target_tokenizer: `tensorflow_text.SentencepieceTokenizer`s.
        decode_config: search or sampling settings (default: greedy).
        jit_compile: compile the search with XLA.
        use_cache: False re-runs the decoder over the whole prefix at every step (the
            naive decoder), only to measure what the key/value cache saves.
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        decode_config: DecodeConfig | None = None,
        jit_compile: bool = True,
        use_cache: bool = True,
    ):
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.decode_config = decode_config or DecodeConfig()
        self.use_cache = use_cache
        self.model_max_length = model.config.max_length
        self.data_config = None  # the run's DataConfig, when built by `from_run`
        self._search = tf.function(self._search_ids, jit_compile=jit_compile)

    @classmethod
    def from_run(cls, run_dir: str | Path, decode_config: DecodeConfig | None = None, **options):
        """The translator of a training run directory (its model.keras and vocabulary);
        `decode_config` defaults to the run's `decode` section; `options` go to __init__."""
        run_dir = Path(run_dir)
        if not (run_dir / "model.keras").is_file():
            raise FileNotFoundError(f"No trained model in {run_dir} (expected model.keras)")
        experiment = config_lib.load([run_dir / "config.yaml"])
        source_tokenizer, target_tokenizer = load_tokenizers(experiment.data)
        # compile=False: inference needs neither the optimizer nor the training loss.
        model = keras.models.load_model(
            run_dir / "model.keras",
            custom_objects={"Seq2SeqTransformer": Seq2SeqTransformer},
            compile=False,
        )
        translator = cls(
            model, source_tokenizer, target_tokenizer, decode_config or experiment.decode, **options
        )
        translator.data_config = experiment.data
        return translator

    def _search_ids(self, source_ids, max_length):
        return search(self.model, source_ids, self.decode_config, max_length, self.use_cache)

    def output_length(self, source_length: int) -> int:
        """Most tokens generated for a padded source of `source_length` tokens."""
        config = self.decode_config
        wanted = config.max_length or int(config.max_length_a * source_length) + config.max_length_b
        return max(1, min(wanted, self.model_max_length - 1))

    def _source_ids(self, sentences: list[str]) -> np.ndarray:
        """``[batch_size, L]`` source ids + EOS, L a multiple of LENGTH_QUANTUM."""
        pieces = self.source_tokenizer.tokenize(tf.constant(sentences)).to_list()
        longest_allowed = self.model_max_length - 1
        rows = []
        for sentence, ids in zip(sentences, pieces, strict=True):
            if len(ids) > longest_allowed:
                logger.warning(
                    "Source of %d tokens truncated to the model's max_length %d: %.60s...",
                    len(ids) + 1,
                    self.model_max_length,
                    sentence,
                )
                ids = ids[:longest_allowed]
            rows.append([*ids, EOS])
        length = min(
            self.model_max_length, LENGTH_QUANTUM * math.ceil(max(map(len, rows)) / LENGTH_QUANTUM)
        )
        source_ids = np.full((self.decode_config.batch_size, length), PAD, np.int32)
        for row, ids in enumerate(rows):
            source_ids[row, : len(ids)] = ids
        return source_ids

    def _translate_batch(self, sentences: list[str]) -> list[list[Hypothesis]]:
        source_ids = self._source_ids(sentences)
        result = self._search(tf.constant(source_ids), self.output_length(source_ids.shape[1]))
        sequences = np.asarray(result.sequences)[: len(sentences)]  # [B, N, T]
        scores = np.asarray(result.scores)[: len(sentences)]  # [B, N]
        batch, count, length = sequences.shape
        texts = self.target_tokenizer.detokenize(
            tf.RaggedTensor.from_tensor(sequences.reshape(batch * count, length), padding=PAD)
        ).numpy()
        return [
            [
                Hypothesis(texts[row * count + rank].decode("utf-8"), float(scores[row, rank]))
                for rank in range(count)
            ]
            for row in range(batch)
        ]

    def translate_nbest_iter(self, sentences: Iterable[str]) -> Iterator[list[Hypothesis]]:
        """Yields, per input sentence and in order, its hypotheses best first
        (`num_return_sequences` of them); an empty line gets empty hypotheses."""
        batch: list[str] = []
        for sentence in sentences:
            batch.append(sentence)
            if len(batch) == self.decode_config.batch_size:
                yield from self._translate_with_empties(batch)
                batch = []
        if batch:
            yield from self._translate_with_empties(batch)

    def _translate_with_empties(self, batch: list[str]) -> list[list[Hypothesis]]:
        non_empty = [sentence for sentence in batch if sentence.strip()]
        translations = iter(self._translate_batch(non_empty) if non_empty else [])
        empty = [Hypothesis("", 0.0)] * self.decode_config.num_return_sequences
        return [next(translations) if sentence.strip() else empty for sentence in batch]

    def translate(self, sentences: Iterable[str]) -> list[str]:
        """The best translation of each sentence."""
        return [hypotheses[0].text for hypotheses in self.translate_nbest_iter(sentences)]


def translate_file(translator: Translator, input_path: str | None, output_path: str | None):
    """Translates `input_path` (None: stdin) line by line into `output_path` (None:
    stdout), with a progress bar when reading a file. With num_return_sequences > 1,
    writes that many ``score<TAB>text`` lines per input line."""
    if input_path is not None:
        with open(input_path, encoding="utf-8") as counted:
            total = sum(1 for _ in counted)
    source = open(input_path, encoding="utf-8") if input_path else sys.stdin  # noqa: SIM115
    target = open(output_path, "w", encoding="utf-8") if output_path else sys.stdout  # noqa: SIM115
    progress = keras.utils.Progbar(total, unit_name="sentence") if input_path else None
    try:
        lines = (line.rstrip("\n") for line in source)
        for done, hypotheses in enumerate(translator.translate_nbest_iter(lines), start=1):
            if translator.decode_config.num_return_sequences == 1:
                target.write(hypotheses[0].text + "\n")
            else:
                target.writelines(f"{h.score:.4f}\t{h.text}\n" for h in hypotheses)
            if progress is not None and done % translator.decode_config.batch_size == 0:
                progress.update(done)
        if progress is not None:
            progress.update(total, finalize=True)
    finally:
        if input_path:
            source.close()
        if output_path:
            target.close()
