"""Strings in, strings out: tokenize -> encode -> search -> detokenize."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import DecodeConfig
from tf_transformer.constants import EOS, PAD
from tf_transformer.data.sources import binary_lines
from tf_transformer.data.tokenizer import load_tokenizers
from tf_transformer.decoding.sampling import SamplingParameters, batch_seed
from tf_transformer.decoding.search import search
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.base import load_run_model, run_model_path
from tf_transformer.progress import progress_verbosity

logger = logging.getLogger(__name__)

# What to run instead, for the runs of the tasks `translate` cannot use.
COMMAND_OF_TASK = {
    "language_model": ": use tf-transformer generate",
    "classification": ": use tf-transformer classify",
    "denoising": " (a pretrained model: fine-tune it with tf-transformer train --init-from)",
}

# Source lengths are padded up to a multiple of this, so the compiled search is traced
# for a handful of shapes rather than one per sentence length.
LENGTH_QUANTUM = 16
# The Translator reads this many batches ahead and searches them sorted by source
# length, so a batch waits for few long sentences (CTranslate2's read_batch_size).
SORTED_BATCHES = 16


def blank_sentences(sentences):
    """True for the sentences ``[B]`` that are empty or only whitespace: they translate
    to "" without reaching the model."""
    return tf.equal(tf.strings.length(tf.strings.strip(sentences)), 0)


def source_token_ids(source_tokenizer, sentences, model_max_length: int):
    """Source ids + EOS ``[B, L]`` int32 (PAD-padded, L a multiple of LENGTH_QUANTUM, at
    most `model_max_length`) and each sentence's untruncated length ``[B]``.

    Invalid UTF-8 bytes become U+FFFD first, so no input can fail the tokenizer. Pure
    TensorFlow: the Python `Translator` and the exported SavedModel share it.
    """
    sentences = tf.strings.unicode_transcode(
        sentences, "UTF-8", "UTF-8", errors="replace", replace_control_characters=False
    )
    pieces = source_tokenizer.tokenize(sentences)  # ragged [B, None]
    lengths = tf.cast(pieces.row_lengths(), tf.int32) + 1  # + EOS
    pieces = pieces[:, : model_max_length - 1]
    eos = tf.fill([pieces.nrows(), 1], tf.constant(EOS, pieces.dtype))
    rows = tf.concat([pieces, eos], axis=1)
    longest = tf.maximum(tf.reduce_max(rows.row_lengths()), 1)
    padded_length = tf.minimum(
        model_max_length, LENGTH_QUANTUM * tf.cast(tf.math.ceil(longest / LENGTH_QUANTUM), tf.int32)
    )
    ids = rows.to_tensor(PAD)
    source_ids = tf.pad(ids, [[0, 0], [0, padded_length - tf.shape(ids)[1]]], constant_values=PAD)
    return source_ids, lengths


def output_length(decode_config: DecodeConfig, source_length, model_max_length: int):
    """Most tokens generated for a source of `source_length` tokens (a Python int, or a
    tensor of lengths): `max_length`, else a * source_length + b, capped by the model's
    positions."""
    if decode_config.max_length:
        wanted = decode_config.max_length
    else:
        # floor(a * length) + b, the same in Python and in a graph (float64 as Python's).
        wanted = (
            tf.cast(tf.cast(source_length, tf.float64) * decode_config.max_length_a, tf.int32)
            + decode_config.max_length_b
        )
    wanted = tf.clip_by_value(wanted, 1, model_max_length - 1)
    return int(wanted) if isinstance(source_length, int) else wanted


def detokenize(target_tokenizer, sequences):
    """Texts ``[B, N]`` of target ids ``[B, N, T]`` (PAD after EOS)."""
    shape = tf.shape(sequences)
    flat = tf.reshape(sequences, [shape[0] * shape[1], shape[2]])
    texts = target_tokenizer.detokenize(tf.RaggedTensor.from_tensor(flat, padding=PAD))
    return tf.reshape(texts, shape[:2])


def string_tensor(sentences: list[str | bytes]):
    """A tf.string tensor of `sentences`; str with surrogate escapes (undecodable bytes
    read with errors="surrogateescape") goes back to its original bytes."""
    return tf.constant(
        [s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s for s in sentences],
        tf.string,
    )


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
        jit_compile: compile the search with XLA; default: yes, except when sampling.
            XLA draws other random numbers than TensorFlow's kernels, and the exported
            SavedModel runs without XLA; without it both draw the same samples.
        use_cache: False re-runs the decoder over the whole prefix at every step (the
            naive decoder), only to measure what the key/value cache saves.
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        decode_config: DecodeConfig | None = None,
        jit_compile: bool | None = None,
        use_cache: bool = True,
    ):
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.decode_config = decode_config or DecodeConfig()
        self.use_cache = use_cache
        self.model_max_length = model.config.max_length
        self.data_config = None  # the run's DataConfig, when built by `from_run`
        if jit_compile is None:
            jit_compile = not self.decode_config.sample
        self._search = tf.function(self._search_ids, jit_compile=jit_compile)

    @classmethod
    def from_run(cls, run_dir: str, decode_config: DecodeConfig | None = None, **options):
        """The translator of a training run directory (its model.keras and vocabulary; a
        local path or any tf.io.gfile URL, from any working directory); `decode_config`
        defaults to the run's `decode` section; `options` go to __init__."""
        run_dir = str(run_dir)
        run_model_path(run_dir)  # no trained model: the error says so, not a config error
        experiment = config_lib.load_run(run_dir)
        if experiment.task != "translation":
            raise ValueError(
                f"{run_dir} is a {experiment.task} run, not a translation model"
                + COMMAND_OF_TASK.get(experiment.task, "")
            )
        source_tokenizer, target_tokenizer = load_tokenizers(experiment.data)
        model = load_run_model(run_dir, Seq2SeqTransformer)
        translator = cls(
            model, source_tokenizer, target_tokenizer, decode_config or experiment.decode, **options
        )
        translator.data_config = experiment.data
        return translator

    def _search_ids(self, source_ids, max_length, step_limit, seed):
        sampling = None
        if self.decode_config.sample:
            sampling = SamplingParameters.from_config(self.decode_config)._replace(seed=seed)
        return search(
            self.model,
            source_ids,
            self.decode_config,
            max_length,
            self.use_cache,
            sampling,
            step_limit=step_limit,
        )

    def output_length(self, source_length: int) -> int:
        """Most tokens generated for a source of `source_length` tokens."""
        return output_length(self.decode_config, source_length, self.model_max_length)

    def source_ids(self, sentences: list[str | bytes]):
        """Padded source ids ``[B, L]`` of `sentences`, as the search gets them, and
        their token counts before truncation ``[B]``."""
        return source_token_ids(
            self.source_tokenizer, string_tensor(sentences), self.model_max_length
        )

    def batches(self, sentences: list[str | bytes]) -> list[list[int]]:
        """The indices of the non-blank `sentences` in the batches they are searched in:
        sorted by source length (stable) for greedy and beam search, whose results do
        not depend on the other sentences of a batch; in input order for sampling,
        whose draws do."""
        is_blank = blank_sentences(string_tensor(sentences)).numpy()
        indices = np.flatnonzero(~is_blank)
        if not self.decode_config.sample and len(indices):
            lengths = self.source_ids([sentences[index] for index in indices])[1].numpy()
            indices = indices[np.argsort(lengths, kind="stable")]
        size = self.decode_config.batch_size
        return [indices[start : start + size].tolist() for start in range(0, len(indices), size)]

    def _translate_batch(
        self, sentences: list[str | bytes], batch_number: int
    ) -> list[list[Hypothesis]]:
        source_ids, lengths = self.source_ids(sentences)
        lengths = lengths.numpy()
        for sentence, length in zip(sentences, lengths, strict=True):
            if length > self.model_max_length:
                logger.warning(
                    "Source of %d tokens truncated to the model's max_length %d: %.60s...",
                    length,
                    self.model_max_length,
                    sentence,
                )
        # Empty rows up to the batch size (the search skips them): one compiled search
        # serves every batch of a padded source length. Each sentence's output limit
        # comes from its own length, so its translation does not depend on the others.
        filler = self.decode_config.batch_size - len(sentences)
        source_ids = tf.pad(source_ids, [[0, filler], [0, 0]])
        step_limits = output_length(
            self.decode_config,
            tf.constant(np.minimum(lengths, self.model_max_length).tolist() + [1] * filler),
            self.model_max_length,
        )
        seed = batch_seed(self.decode_config.seed, batch_number)
        result = self._search(
            source_ids, self.output_length(source_ids.shape[1]), step_limits, seed
        )
        texts = detokenize(self.target_tokenizer, result.sequences[: len(sentences)]).numpy()
        scores = np.asarray(result.scores)[: len(sentences)]  # [B, N]
        return [
            [
                Hypothesis(text.decode("utf-8"), float(score))
                for text, score in zip(row, row_scores, strict=True)
            ]
            for row, row_scores in zip(texts, scores, strict=True)
        ]

    def translate_nbest_iter(self, sentences: Iterable[str | bytes]) -> Iterator[list[Hypothesis]]:
        """Yields, per input sentence and in order, its hypotheses best first
        (`num_return_sequences` of them); an empty line gets empty hypotheses. Invalid
        UTF-8 (bytes, or str with surrogate escapes) is read with U+FFFD for bad bytes.

        Sentences are read SORTED_BATCHES batches ahead and searched in `batches`.
        Sampling draws the k-th batch of a call from `batch_seed(seed, k)`, as the
        SavedModel's `sample` does with one request of up to that many batches."""
        window_size = self.decode_config.batch_size * SORTED_BATCHES
        window: list[str | bytes] = []
        batch_number = 0
        for sentence in sentences:
            window.append(sentence)
            if len(window) == window_size:
                hypotheses, batch_number = self._translate_window(window, batch_number)
                yield from hypotheses
                window = []
        if window:
            yield from self._translate_window(window, batch_number)[0]

    def _translate_window(
        self, sentences: list[str | bytes], batch_number: int
    ) -> tuple[list[list[Hypothesis]], int]:
        """The hypotheses of `sentences` in their order, and the next batch number."""
        results = [[Hypothesis("", 0.0)] * self.decode_config.num_return_sequences] * len(sentences)
        for batch in self.batches(sentences):
            translated = self._translate_batch([sentences[index] for index in batch], batch_number)
            for index, hypotheses in zip(batch, translated, strict=True):
                results[index] = hypotheses
            batch_number += 1
        return results, batch_number

    def translate(self, sentences: Iterable[str | bytes]) -> list[str]:
        """The best translation of each sentence."""
        return [hypotheses[0].text for hypotheses in self.translate_nbest_iter(sentences)]


def translate_file(translator: Translator, input_path: str | None, output_path: str | None):
    """Translates `input_path` (None: stdin) line by line into `output_path` (None:
    stdout), with a progress bar when reading a file into a file; both may be local paths or any
    tf.io.gfile URL. With num_return_sequences > 1, writes that many ``score<TAB>text``
    lines per input line.

    Lines end at "\n" only (a "\r" before it is dropped): a lone "\r" stays inside its
    line, so the output has one line per "\n" of the input. Lines that are not valid
    UTF-8 are translated with U+FFFD for their bad bytes, and a warning names the file,
    how many lines and the first one.
    """
    if input_path is not None:
        with tf.io.gfile.GFile(input_path, "rb") as counted:
            total = sum(1 for _ in binary_lines(counted))
        source = tf.io.gfile.GFile(input_path, "rb")
    else:
        total = None
        source = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: no universal newlines
    target = tf.io.gfile.GFile(output_path, "w") if output_path else sys.stdout
    # Keras's progress bar writes to stdout: only when the translations do not go there.
    progress = (
        keras.utils.Progbar(total, unit_name="sentence", verbose=progress_verbosity())
        if input_path and output_path
        else None
    )
    bad_lines: list[int] = []
    try:
        lines = _checked_lines(binary_lines(source) if input_path else source, bad_lines)
        for done, hypotheses in enumerate(translator.translate_nbest_iter(lines), start=1):
            if translator.decode_config.num_return_sequences == 1:
                target.write(hypotheses[0].text + "\n")
            else:
                target.write("".join(f"{h.score:.4f}\t{h.text}\n" for h in hypotheses))
            if progress is not None and done % translator.decode_config.batch_size == 0:
                progress.update(done)
        if progress is not None:
            progress.update(total, finalize=True)
        if bad_lines:
            logger.warning(
                "%d line(s) of %s are not valid UTF-8 (first: line %d); their bad bytes were "
                "read as U+FFFD",
                len(bad_lines),
                input_path or "standard input",
                bad_lines[0],
            )
    finally:
        if input_path:
            source.close()
        if output_path:
            target.close()
        else:
            target.flush()


def read_lines(path: str) -> list[str]:
    """The lines of the text file at `path` (local or any tf.io.gfile URL), split as
    `translate_file` splits them: at "\n" only."""
    with tf.io.gfile.GFile(path, "rb") as file:
        return list(_checked_lines(binary_lines(file), []))


def _checked_lines(source, bad_lines: list[int]) -> Iterator[str]:
    """The lines of `source` (bytes, or str from a stream without a binary buffer) up to
    each "\n", without it or a "\r" just before it; appends the numbers of those
    holding bytes that are not UTF-8 to `bad_lines` (they come as surrogate escapes)."""
    for number, line in enumerate(source, start=1):
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogateescape")
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(number)
            text = line.decode("utf-8", "surrogateescape")
        yield text
