"""SentencePiece vocabularies: train them with the package's special ids, load them in-graph.

Training uses the `sentencepiece` trainer with PAD, UNK, BOS and EOS from constants.py.
Tokenization uses tensorflow-text's `SentencepieceTokenizer`, a TensorFlow op, so the
same tokenizer runs in tf.data and inside an exported SavedModel. Paths are strings that
tf.io.gfile reads and writes: local paths and URLs (gs://, ram://) alike.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text

from tf_transformer.config import DataConfig, make_parent_directory
from tf_transformer.constants import (
    BOS,
    EOS,
    FIRST_SENTINEL,
    MASK,
    MASK_PIECE,
    PAD,
    SENTINEL_PIECE,
    UNK,
)
from tf_transformer.data import sources

logger = logging.getLogger(__name__)

# Sentences between two progress messages while reading a corpus.
PROGRESS_INTERVAL = 100_000


class VocabularySummary(NamedTuple):
    model_path: str  # the .model file written (a .vocab file lies beside it)
    vocab_size: int  # pieces, special ids included
    sentences: int  # non-empty sentences read
    empty_lines_skipped: int


def train_tokenizer(
    sentences: Iterable[str],
    model_prefix: str | os.PathLike,
    vocab_size: int,
    model_type: str = "unigram",
    *,
    normalization_rule_name: str = "nmt_nfkc",
    character_coverage: float = 1.0,
    max_sentences: int = 2_000_000,
    extra_ids: int = 0,
) -> VocabularySummary:
    """Trains a SentencePiece model into `model_prefix`.model / .vocab.

    `extra_ids` > 0 reserves `reserved_pieces(extra_ids)` as control symbols (ids MASK,
    FIRST_SENTINEL, ...: text never produces them, decoding drops them) inside the
    `vocab_size` pieces.

    Empty lines are skipped and counted. SentencePiece trains on a random sample of
    `max_sentences` sentences when given more. `character_coverage=1.0` gives every
    character of the corpus its own piece (right for alphabetic languages; SentencePiece
    suggests 0.9995 for Chinese or Japanese).

    SentencePiece writes local files only: it trains in a temporary directory, and the
    two files are then copied to `model_prefix`, which may be a URL (gs://bucket/spm).

    Raises:
        ValueError: the corpus cannot support `vocab_size` pieces, or has no sentence.
    """
    model_prefix = os.fspath(model_prefix)
    counts = {"sentences": 0, "empty": 0}

    def non_empty(lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            if not line.strip():
                counts["empty"] += 1
                continue
            counts["sentences"] += 1
            if counts["sentences"] % PROGRESS_INTERVAL == 0:
                logger.info("read %d sentences", counts["sentences"])
            yield line

    with tempfile.TemporaryDirectory(prefix="sentencepiece-") as local_directory:
        local_prefix = os.path.join(local_directory, "sentencepiece")
        _train_sentencepiece(
            non_empty(sentences),
            local_prefix,
            vocab_size,
            model_type,
            counts,
            normalization_rule_name=normalization_rule_name,
            character_coverage=character_coverage,
            max_sentences=max_sentences,
            control_symbols=reserved_pieces(extra_ids),
        )
        make_parent_directory(model_prefix)
        for suffix in (".model", ".vocab"):
            tf.io.gfile.copy(local_prefix + suffix, model_prefix + suffix, overwrite=True)
    summary = VocabularySummary(
        f"{model_prefix}.model", vocab_size, counts["sentences"], counts["empty"]
    )
    logger.info(
        "wrote %s: %d pieces (%s) from %d sentences, %d empty lines skipped",
        summary.model_path,
        vocab_size,
        model_type,
        summary.sentences,
        summary.empty_lines_skipped,
    )
    return summary


def _train_sentencepiece(
    sentences: Iterator[str],
    model_prefix: str,
    vocab_size: int,
    model_type: str,
    counts: dict[str, int],
    *,
    normalization_rule_name: str,
    character_coverage: float,
    max_sentences: int,
    control_symbols: tuple[str, ...],
) -> None:
    """Runs the SentencePiece trainer into the local `model_prefix`.model / .vocab."""
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_prefix=model_prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            normalization_rule_name=normalization_rule_name,
            character_coverage=character_coverage,
            input_sentence_size=max_sentences,
            control_symbols=list(control_symbols),
            minloglevel=1,  # SentencePiece's own INFO lines are many; keep warnings
        )
    except RuntimeError as error:
        raise _vocabulary_error(error, vocab_size, counts["sentences"]) from None


def _vocabulary_error(error: RuntimeError, vocab_size: int, sentences: int) -> ValueError:
    """Turns a SentencePiece training failure into a message about the vocabulary size."""
    message = str(error)
    if sentences == 0:
        return ValueError("Cannot train a vocabulary: the corpus has no non-empty sentence")
    too_high = re.search(
        r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message
    )
    if too_high:
        return ValueError(
            f"vocab_size={vocab_size} is too large for this corpus: "
            f"it supports at most {too_high.group(1)} pieces"
        )
    too_low = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", message)
    if too_low:
        return ValueError(
            f"vocab_size={vocab_size} is too small for this corpus: it needs at least "
            f"{too_low.group(1)} pieces (one per character plus the special pieces)"
        )
    return ValueError(f"SentencePiece could not train vocab_size={vocab_size}: {message}")


def reserved_pieces(extra_ids: int) -> tuple[str, ...]:
    """The pieces `extra_ids` reserves: the mask, then that many sentinels (none for 0)."""
    if not extra_ids:
        return ()
    return (MASK_PIECE, *(SENTINEL_PIECE.format(index) for index in range(extra_ids)))


def check_reserved_pieces(model_path: str, extra_ids: int) -> None:
    """Raises ValueError unless the vocabulary at `model_path` holds the mask piece at
    MASK and `extra_ids` sentinels from FIRST_SENTINEL on."""
    with tf.io.gfile.GFile(model_path, "rb") as model_file:
        processor = sentencepiece.SentencePieceProcessor(model_proto=model_file.read())
    expected = reserved_pieces(extra_ids)
    found = tuple(
        processor.id_to_piece(index) if index < processor.get_piece_size() else None
        for index in range(MASK, MASK + len(expected))
    )
    if found != expected:
        raise ValueError(
            f"{model_path} does not reserve the mask and {extra_ids} sentinel pieces at ids "
            f"{MASK}..{FIRST_SENTINEL + extra_ids - 1}: train the vocabulary with "
            f"data.extra_ids={extra_ids} (a vocabulary trained without it cannot be used)"
        )


def vocabulary_paths(config: DataConfig) -> tuple[str, str]:
    """The SentencePiece model files (local paths or URLs) for the source and the target
    side: one file, twice, for a joint vocabulary."""
    prefix = config.vocabulary_prefix
    if config.joint_vocabulary:
        return f"{prefix}.model", f"{prefix}.model"
    return f"{prefix}.{config.source_language}.model", f"{prefix}.{config.target_language}.model"


def build_vocabulary(
    config: DataConfig, languages: tuple[str, ...] | None = None
) -> list[VocabularySummary]:
    """Trains the vocabulary (or the two vocabularies) of `config` on its training split;
    `languages`: one joint vocabulary on those languages' lines (`sources.load_lines`)
    instead, for monolingual tasks."""
    corpus = config.tfds_name or config.data_dir or f"synthetic (seed {config.synthetic_seed})"
    source_path, target_path = vocabulary_paths(config)
    if languages:
        logger.info(
            "training a %s vocabulary of %d pieces on the %s train split of %s",
            config.vocab_model_type,
            config.vocab_size,
            "+".join(languages),
            corpus,
        )
        sentences = (
            line.decode("utf-8")
            for language in languages
            for line in sources.load_lines(config, "train", language)
            .prefetch(tf.data.AUTOTUNE)
            .as_numpy_iterator()
        )
        return [train_vocabulary(sentences, source_path, config)]
    logger.info(
        "training %s %s vocabulary of %d pieces on the train split of %s, %s-%s",
        "a joint" if config.joint_vocabulary else "a per-language",
        config.vocab_model_type,
        config.vocab_size,
        corpus,
        config.source_language,
        config.target_language,
    )
    pairs = sources.load_pairs(config, "train")
    if config.joint_vocabulary:
        sentences = (text for pair in _decoded(pairs) for text in pair)
        return [train_vocabulary(sentences, source_path, config)]
    return [
        train_vocabulary((source for source, _ in _decoded(pairs)), source_path, config),
        train_vocabulary((target for _, target in _decoded(pairs)), target_path, config),
    ]


def _decoded(pairs: tf.data.Dataset) -> Iterator[tuple[str, str]]:
    for source, target in pairs.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        yield source.decode("utf-8"), target.decode("utf-8")


def train_vocabulary(
    sentences: Iterable[str], model_path: str, config: DataConfig
) -> VocabularySummary:
    """Trains the vocabulary `config` describes on `sentences` into `model_path`."""
    model_prefix = model_path.removesuffix(".model")
    return train_tokenizer(
        sentences,
        model_prefix,
        config.vocab_size,
        config.vocab_model_type,
        extra_ids=config.extra_ids,
    )


def load_tokenizer(model_path: str | os.PathLike) -> tf_text.SentencepieceTokenizer:
    """The in-graph tokenizer of a SentencePiece model file (local or any tf.io.gfile path).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the model was trained with other special ids than constants.py's.
    """
    model_path = os.fspath(model_path)
    if not tf.io.gfile.exists(model_path):
        raise FileNotFoundError(
            f"SentencePiece model not found: {model_path} "
            "(train one with tf-transformer build-vocab)"
        )
    with tf.io.gfile.GFile(model_path, "rb") as model_file:
        model = model_file.read()
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    special_ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    if special_ids != (PAD, UNK, BOS, EOS):
        raise ValueError(
            f"{model_path} has special ids pad/unk/bos/eos = {special_ids}, "
            f"expected {(PAD, UNK, BOS, EOS)}; rebuild it with tf-transformer build-vocab"
        )
    return tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32)


def load_tokenizers(
    config: DataConfig,
) -> tuple[tf_text.SentencepieceTokenizer, tf_text.SentencepieceTokenizer]:
    """Source and target tokenizers of `config`: the same object for a joint vocabulary."""
    source_path, target_path = vocabulary_paths(config)
    source_tokenizer = load_tokenizer(source_path)
    if config.joint_vocabulary:
        return source_tokenizer, source_tokenizer
    return source_tokenizer, load_tokenizer(target_path)
