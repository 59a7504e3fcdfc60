"""Fixtures of the data tests: tiny SentencePiece models trained once per session, and the
Multi30k directory beside the checkout (tests that need it skip when it is absent)."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
import sentencepiece

from tf_transformer.data import synthetic, tokenizer

MULTI30K_DIR = Path(__file__).resolve().parents[2] / "../shared/data/multi30k"
# Multi30k training pairs the session's Multi30k vocabulary learns from.
MULTI30K_VOCABULARY_PAIRS = 3000


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (MULTI30K_DIR / "train.en.gz").is_file():
        pytest.skip(f"Multi30k raw files not found in {MULTI30K_DIR.resolve()}")
    return MULTI30K_DIR


@pytest.fixture(scope="session")
def synthetic_model_path(tmp_path_factory) -> Path:
    """A 200-piece joint unigram model of 1,000 synthetic pairs."""
    pairs = synthetic.generate_pairs(1000, seed=0)
    prefix = tmp_path_factory.mktemp("vocabulary") / "synthetic"
    sentences = [text for pair in pairs for text in pair]
    return tokenizer.train_tokenizer(sentences, prefix, vocab_size=200).model_path


@pytest.fixture
def synthetic_tokenizer(synthetic_model_path):
    # Per test: tf.random.set_seed (run before each test) clears TensorFlow's kernel cache,
    # which frees the SentencePiece op resource of tokenizers made before it.
    return tokenizer.load_tokenizer(synthetic_model_path)


@pytest.fixture(scope="session")
def synthetic_processor(synthetic_model_path) -> sentencepiece.SentencePieceProcessor:
    """The same model in the sentencepiece library: an independent reference."""
    return sentencepiece.SentencePieceProcessor(model_file=str(synthetic_model_path))


@pytest.fixture(scope="session")
def multi30k_sentences(multi30k_dir) -> list[str]:
    """English and German sentences of the first Multi30k training pairs."""
    sentences = []
    for language in ("en", "de"):
        with gzip.open(multi30k_dir / f"train.{language}.gz", "rt", encoding="utf-8") as lines:
            head = itertools.islice(lines, MULTI30K_VOCABULARY_PAIRS)
            sentences += [line.rstrip("\n") for line in head]
    return sentences


@pytest.fixture(scope="session")
def multi30k_model_path(multi30k_sentences, tmp_path_factory) -> Path:
    """A 500-piece joint unigram model of the first Multi30k training pairs."""
    prefix = tmp_path_factory.mktemp("vocabulary") / "multi30k"
    return tokenizer.train_tokenizer(multi30k_sentences, prefix, vocab_size=500).model_path
