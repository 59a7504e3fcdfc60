from __future__ import annotations

import os
import re

import pytest
import sentencepiece
import tensorflow as tf

from tf_transformer import cli
from tf_transformer.config import DataConfig
from tf_transformer.constants import BOS, EOS, PAD, UNK
from tf_transformer.data import synthetic, tokenizer

TINY_CORPUS = ["the dog sees the ball", "a cat sleeps", "der Hund sieht den Ball"] * 20


def test_trained_model_has_the_package_special_ids(synthetic_processor, synthetic_tokenizer):
    assert [
        synthetic_processor.pad_id(),
        synthetic_processor.unk_id(),
        synthetic_processor.bos_id(),
        synthetic_processor.eos_id(),
    ] == [PAD, UNK, BOS, EOS]
    assert [synthetic_processor.id_to_piece(i) for i in (PAD, UNK, BOS, EOS)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    ]
    assert int(synthetic_tokenizer.vocab_size()) == 200


def test_in_graph_tokenizer_matches_sentencepiece(synthetic_tokenizer, synthetic_processor):
    sentences = ["Heute sieht der Hund den Ball.", "My old cats have slept."]
    ids = synthetic_tokenizer.tokenize(tf.constant(sentences))
    assert ids.dtype == tf.int32
    assert ids.to_list() == synthetic_processor.encode(sentences)


def test_detokenize_skips_padding_and_special_ids(synthetic_tokenizer, synthetic_processor):
    ids = synthetic_processor.encode("The dog sleeps.")
    padded = tf.constant([[BOS, *ids, EOS, PAD, PAD]])
    assert synthetic_tokenizer.detokenize(padded).numpy().tolist() == [b"The dog sleeps."]


def test_multi30k_round_trips_through_the_tokenizer(multi30k_model_path, multi30k_sentences):
    in_graph = tokenizer.load_tokenizer(multi30k_model_path)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(multi30k_model_path))
    ids = in_graph.tokenize(tf.constant(multi30k_sentences))
    assert not any(UNK in row for row in ids.to_list())
    restored = [text.decode("utf-8") for text in in_graph.detokenize(ids).numpy()]
    # nmt_nfkc normalization (NFKC, whitespace runs collapsed, ends stripped); "▁" marks
    # the spaces in SentencePiece's normalized form.
    normalized = [
        processor.normalize(text).replace("▁", " ").strip() for text in multi30k_sentences
    ]
    assert restored == normalized
    # The normalization left the text itself alone, apart from whitespace.
    unchanged = [" ".join(text.split()) for text in multi30k_sentences]
    assert sum(a != b for a, b in zip(restored, unchanged, strict=True)) == 0


@pytest.mark.parametrize(
    ("normalization_rule_name", "restored"),
    [("nmt_nfkc", "the wide world"), ("identity", "the ｗide ｗorld")],
)
def test_normalization_rule_decides_what_round_trips(tmp_path, normalization_rule_name, restored):
    corpus = ["the ｗide ｗorld", *TINY_CORPUS]
    summary = tokenizer.train_tokenizer(
        corpus, tmp_path / "norm", 30, normalization_rule_name=normalization_rule_name
    )
    in_graph = tokenizer.load_tokenizer(summary.model_path)
    ids = in_graph.tokenize(tf.constant(["the ｗide ｗorld"]))
    assert in_graph.detokenize(ids).numpy()[0].decode("utf-8") == restored


def test_training_counts_and_skips_empty_lines(tmp_path):
    summary = tokenizer.train_tokenizer(["", *TINY_CORPUS, "  "], tmp_path / "tiny", vocab_size=25)
    assert summary == tokenizer.VocabularySummary(str(tmp_path / "tiny.model"), 25, 60, 2)
    assert (tmp_path / "tiny.vocab").read_text().count("\n") == 25


def test_vocab_size_too_large_names_requested_and_largest_size(tmp_path):
    with pytest.raises(ValueError) as error:
        tokenizer.train_tokenizer(TINY_CORPUS, tmp_path / "tiny", vocab_size=5000)
    message = str(error.value)
    match = re.fullmatch(
        r"vocab_size=5000 is too large for this corpus: it supports at most (\d+) pieces", message
    )
    assert match, message
    largest = int(match.group(1))
    # The size it names does train.
    assert tokenizer.train_tokenizer(TINY_CORPUS, tmp_path / "tiny", largest).vocab_size == largest


def test_vocab_size_too_small_names_the_minimum(tmp_path):
    with pytest.raises(ValueError, match=re.escape("vocab_size=10 is too small for this corpus")):
        tokenizer.train_tokenizer(TINY_CORPUS, tmp_path / "tiny", vocab_size=10)
    with pytest.raises(ValueError, match=r"it needs at least 23 pieces"):
        tokenizer.train_tokenizer(TINY_CORPUS, tmp_path / "tiny", vocab_size=10)


def test_corpus_of_empty_lines_is_refused(tmp_path):
    with pytest.raises(ValueError, match="the corpus has no non-empty sentence"):
        tokenizer.train_tokenizer(["", " "], tmp_path / "none", vocab_size=100)


def test_missing_model_file_is_named(tmp_path):
    path = tmp_path / "absent.model"
    with pytest.raises(FileNotFoundError, match=f"SentencePiece model not found: {path}"):
        tokenizer.load_tokenizer(path)


def test_model_with_other_special_ids_is_refused(tmp_path):
    # SentencePiece's own defaults: unk=0, bos=1, eos=2, no pad.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TINY_CORPUS),
        model_prefix=str(tmp_path / "default_ids"),
        vocab_size=25,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match=re.escape("special ids pad/unk/bos/eos = (-1, 0, 1, 2)")):
        tokenizer.load_tokenizer(tmp_path / "default_ids.model")


def small_synthetic_config(tmp_path, **overrides) -> DataConfig:
    values = dict(
        synthetic_train_size=300,
        synthetic_eval_size=10,
        vocab_size=120,
        vocabulary_prefix=str(tmp_path / "spm"),
    )
    return DataConfig(**{**values, **overrides})


def test_build_vocabulary_joint(tmp_path):
    config = small_synthetic_config(tmp_path, vocab_model_type="bpe")
    [summary] = tokenizer.build_vocabulary(config)
    assert summary == tokenizer.VocabularySummary(str(tmp_path / "spm.model"), 120, 600, 0)
    model_path = str(tmp_path / "spm.model")
    assert tokenizer.vocabulary_paths(config) == (model_path, model_path)
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(config)
    assert source_tokenizer is target_tokenizer


def test_build_vocabulary_per_language(tmp_path):
    config = small_synthetic_config(tmp_path, joint_vocabulary=False, vocab_size=100)
    summaries = tokenizer.build_vocabulary(config)
    assert [(summary.model_path, summary.sentences) for summary in summaries] == [
        (str(tmp_path / "spm.en.model"), 300),
        (str(tmp_path / "spm.de.model"), 300),
    ]
    pieces = [
        {
            line.split("\t")[0]
            for line in (tmp_path / f"spm.{language}.vocab").read_text().splitlines()
        }
        for language in ("en", "de")
    ]
    # Every character has a piece (character_coverage=1.0): German umlauts only in German.
    assert ("ü" in pieces[0], "ü" in pieces[1]) == (False, True)


def test_build_vocab_command_writes_the_model_and_reports(tmp_path, caplog):
    caplog.set_level("INFO")
    prefix = tmp_path / "cli"
    argv = [
        "build-vocab",
        "--source",
        "synthetic",
        "--vocab-size",
        "150",
        "--model-type",
        "unigram",
    ]
    argv += ["--vocabulary-prefix", str(prefix), "--set", "data.synthetic_train_size=300"]
    assert cli.main(argv) == 0
    processor = sentencepiece.SentencePieceProcessor(model_file=f"{prefix}.model")
    assert processor.vocab_size() == 150
    assert f"wrote {prefix}.model: 150 pieces (unigram) from 600 sentences" in caplog.text


def test_build_vocab_command_reports_bad_sizes(tmp_path, capsys):
    argv = ["build-vocab", "--vocab-size", "5000", "--vocabulary-prefix", str(tmp_path / "x")]
    argv += ["--set", "data.synthetic_train_size=300"]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("tf-transformer build-vocab: error: vocab_size=5000 is too large")


def test_a_vocabulary_trains_to_and_loads_from_a_url(tmp_path, monkeypatch):
    """SentencePiece writes local files only: it trains in a temporary directory and the
    files are copied to the URL (TF's in-memory filesystem here; gs:// alike)."""
    monkeypatch.chdir(tmp_path)
    prefix = "ram://tokenizer_test/vocabulary/tiny"
    summary = tokenizer.train_tokenizer(TINY_CORPUS, prefix, vocab_size=25)
    assert summary == tokenizer.VocabularySummary(f"{prefix}.model", 25, 60, 0)
    with tf.io.gfile.GFile(f"{prefix}.vocab") as vocab_file:
        assert vocab_file.read().count("\n") == 25
    local = tokenizer.train_tokenizer(TINY_CORPUS, str(tmp_path / "local"), vocab_size=25)
    sentences = tf.constant(["the dog sees a cat", "der Ball"])
    assert (
        tokenizer.load_tokenizer(summary.model_path).tokenize(sentences).to_list()
        == tokenizer.load_tokenizer(local.model_path).tokenize(sentences).to_list()
    )
    assert sorted(os.listdir(tmp_path)) == ["local.model", "local.vocab"]


def test_build_vocabulary_at_a_url_and_load_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = small_synthetic_config(
        tmp_path, joint_vocabulary=False, vocab_size=100, vocabulary_prefix="ram://build_test/spm"
    )
    summaries = tokenizer.build_vocabulary(config)
    paths = ("ram://build_test/spm.en.model", "ram://build_test/spm.de.model")
    assert tokenizer.vocabulary_paths(config) == paths
    assert [summary.model_path for summary in summaries] == list(paths)
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(config)
    assert [int(t.vocab_size()) for t in (source_tokenizer, target_tokenizer)] == [100, 100]
    assert os.listdir(tmp_path) == []


def test_missing_model_at_a_url_is_named():
    with pytest.raises(
        FileNotFoundError, match="SentencePiece model not found: ram://nowhere/absent.model"
    ):
        tokenizer.load_tokenizer("ram://nowhere/absent.model")


def test_extra_ids_reserve_the_mask_and_sentinels_after_the_special_ids(tmp_path):
    from tf_transformer.constants import FIRST_SENTINEL, MASK

    sentences = [" ".join(pair) for pair in synthetic.generate_pairs(300, seed=0)]
    summary = tokenizer.train_tokenizer(sentences, tmp_path / "extra", 120, extra_ids=3)
    processor = sentencepiece.SentencePieceProcessor(model_file=summary.model_path)
    assert [processor.id_to_piece(i) for i in (MASK, FIRST_SENTINEL, FIRST_SENTINEL + 2)] == [
        "<mask>",
        "<extra_id_0>",
        "<extra_id_2>",
    ]
    # Text never produces them, even spelled out.
    assert MASK not in processor.encode("<mask> <extra_id_0>")
    tokenizer.check_reserved_pieces(summary.model_path, 3)
    with pytest.raises(ValueError, match="does not reserve the mask and 4 sentinel pieces"):
        tokenizer.check_reserved_pieces(summary.model_path, 4)
