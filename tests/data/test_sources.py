from __future__ import annotations

import gzip
import logging
import os

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_transformer.config import DataConfig
from tf_transformer.data import sources, synthetic


def as_text(pairs: tf.data.Dataset) -> list[tuple[str, str]]:
    return [(s.decode("utf-8"), t.decode("utf-8")) for s, t in pairs.as_numpy_iterator()]


def write_lines(path, lines: list[str]) -> None:
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def test_parallel_files_plain_and_gzipped(tmp_path):
    write_lines(tmp_path / "train.en", ["A dog.", "", "Two cats."])
    write_lines(tmp_path / "train.de.gz", ["Ein Hund.", "Leer.", "Zwei Katzen."])
    pairs = sources.parallel_file_pairs(tmp_path / "train.en", tmp_path / "train.de.gz")
    # Empty lines pass through here; the pipeline drops and counts them.
    assert as_text(pairs) == [("A dog.", "Ein Hund."), ("", "Leer."), ("Two cats.", "Zwei Katzen.")]


def test_tsv_file(tmp_path):
    write_lines(tmp_path / "train.tsv.gz", ["A dog.\tEin Hund.", "", "Größe\tSize"])
    assert as_text(sources.tsv_pairs(tmp_path / "train.tsv.gz")) == [
        ("A dog.", "Ein Hund."),
        ("", ""),
        ("Größe", "Size"),
    ]


def test_a_tsv_header_line_is_skipped_and_reported(tmp_path, caplog):
    path = tmp_path / "train.tsv"
    write_lines(path, ["sentence\tlabel", "good film\t1", "label\tlabel"])
    with caplog.at_level(logging.INFO):
        assert as_text(sources.tsv_pairs(path)) == [("good film", "1"), ("label", "label")]
    assert f"{path}: line 1 is a header (its last field is 'label'), skipped" in caplog.text


def test_files_source_reads_each_split_from_the_data_dir(tmp_path):
    write_lines(tmp_path / "validation.de", ["Hallo.", "Danke."])
    write_lines(tmp_path / "validation.en", ["Hello.", "Thanks."])
    write_lines(tmp_path / "test.tsv", ["Ja.\tYes."])
    config = DataConfig(
        source="files", data_dir=str(tmp_path), source_language="de", target_language="en"
    )
    assert as_text(sources.load_pairs(config, "validation")) == [
        ("Hallo.", "Hello."),
        ("Danke.", "Thanks."),
    ]
    assert as_text(sources.load_pairs(config, "test")) == [("Ja.", "Yes.")]
    with pytest.raises(
        FileNotFoundError,
        match=f"No train split in {tmp_path}: expected train.de and train.en \\(or .gz\\), "
        "or train.tsv \\(or .gz\\)",
    ):
        sources.load_pairs(config, "train")


def test_parallel_files_of_different_lengths_name_both_files_and_counts(tmp_path):
    write_lines(tmp_path / "a.en", ["one", "two", "three"])
    write_lines(tmp_path / "a.de.gz", ["eins", "zwei"])
    with pytest.raises(ValueError) as error:
        sources.parallel_file_pairs(tmp_path / "a.en", tmp_path / "a.de.gz")
    assert str(error.value) == (
        f"Parallel files differ in length: {tmp_path / 'a.en'} has 3 lines, "
        f"{tmp_path / 'a.de.gz'} has 2"
    )


@pytest.mark.parametrize("name", ["bad.en", "bad.en.gz"])
def test_invalid_utf8_names_file_and_line(tmp_path, name):
    data = b"fine\nalso fine\ncaf\xe9\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    write_lines(tmp_path / "good.de", ["a", "b", "c"])
    with pytest.raises(ValueError) as error:
        sources.parallel_file_pairs(path, tmp_path / "good.de")
    assert str(error.value) == (
        f"{path}: line 3 is not valid UTF-8 (invalid continuation byte at byte 3)"
    )


def test_missing_file_is_named(tmp_path):
    write_lines(tmp_path / "here.en", ["a"])
    with pytest.raises(FileNotFoundError) as error:
        sources.parallel_file_pairs(tmp_path / "here.en", tmp_path / "gone.de")
    assert str(error.value) == f"Text file not found: {tmp_path / 'gone.de'}"


def test_tsv_line_without_one_tab_is_named(tmp_path):
    write_lines(tmp_path / "pairs.tsv", ["a\tb", "c\td\te"])
    with pytest.raises(ValueError) as error:
        sources.tsv_pairs(tmp_path / "pairs.tsv")
    assert str(error.value) == (
        f"{tmp_path / 'pairs.tsv'}: line 2 has 3 tab-separated fields, expected 2 "
        "(source<TAB>target)"
    )


TED_EXAMPLES = [
    {"pt": "olá mundo", "en": "hello world"},
    {"pt": "obrigado", "en": "thank you"},
]


def mock_as_dataset(builder, *args, **kwargs):
    """What mock_data serves instead of prepared TFDS files: fixed translation examples."""
    return tf.data.Dataset.from_tensor_slices(
        {language: [example[language] for example in TED_EXAMPLES] for language in ("pt", "en")}
    )


@pytest.mark.parametrize(
    ("source_language", "target_language"),
    [("pt", "en"), ("en", "pt")],
)
def test_tfds_dataset_in_the_chosen_direction(source_language, target_language):
    with tfds.testing.mock_data(as_dataset_fn=mock_as_dataset):
        pairs = sources.tfds_pairs(
            "ted_hrlr_translate/pt_to_en", "train", source_language, target_language
        )
        assert as_text(pairs) == [
            (example[source_language], example[target_language]) for example in TED_EXAMPLES
        ]


def test_tfds_source_from_config():
    config = DataConfig(
        source="tfds", tfds_name="wmt14_translate/de-en", source_language="de", target_language="en"
    )
    with tfds.testing.mock_data(num_examples=3):
        pairs = as_text(sources.load_pairs(config, "validation"))
    assert len(pairs) == 3
    assert all(isinstance(text, str) for pair in pairs for text in pair)


def test_tfds_language_that_the_dataset_lacks_is_named():
    with tfds.testing.mock_data(num_examples=1), pytest.raises(ValueError) as error:
        sources.tfds_pairs("ted_hrlr_translate/pt_to_en", "train", "fr", "en")
    assert (
        str(error.value)
        == "TFDS dataset ted_hrlr_translate/pt_to_en has no language 'fr'; it has en, pt"
    )


def test_multi30k_splits(multi30k_dir):
    config = DataConfig(source="multi30k", data_dir=str(multi30k_dir))
    sizes = {
        split: int(sources.load_pairs(config, split).reduce(0, lambda count, _: count + 1))
        for split in sources.SPLITS
    }
    assert sizes == {"train": 29000, "validation": 1014, "test": 1000}
    [first] = as_text(sources.load_pairs(config, "train").take(1))
    assert first == (
        "Two young, White males are outside near many bushes.",
        "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    )


@pytest.mark.parametrize(("source_language", "target_language"), [("en", "de"), ("de", "en")])
def test_synthetic_source_in_either_direction(source_language, target_language):
    config = DataConfig(
        synthetic_train_size=100,
        synthetic_eval_size=7,
        synthetic_seed=5,
        source_language=source_language,
        target_language=target_language,
    )
    expected = synthetic.synthetic_splits(5, 100, 7, 7)["test"]
    if source_language == "de":
        expected = [(german, english) for english, german in expected]
    assert as_text(sources.load_pairs(config, "test")) == expected


def test_synthetic_source_refuses_other_languages():
    with pytest.raises(ValueError, match=r"translates between en and de, not \('en', 'fr'\)"):
        sources.synthetic_pairs("train", target_language="fr")


def test_unknown_split_is_refused():
    with pytest.raises(
        ValueError, match=r"split must be one of \('train', 'validation', 'test'\), got 'dev'"
    ):
        sources.load_pairs(DataConfig(), "dev")


def write_url(url: str, lines: list[str]) -> None:
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    with tf.io.gfile.GFile(url, "wb") as file:
        file.write(gzip.compress(data) if url.endswith(".gz") else data)


def test_files_source_at_a_url(tmp_path, monkeypatch):
    """A corpus in TF's in-memory filesystem reads like a local one (gs:// alike)."""
    monkeypatch.chdir(tmp_path)
    corpus = "ram://sources_test/corpus"
    write_url(f"{corpus}/train.en", ["A dog.", "Two cats."])
    write_url(f"{corpus}/train.de.gz", ["Ein Hund.", "Zwei Katzen."])
    write_url(f"{corpus}/validation.tsv.gz", ["Hello.\tHallo.", "Größe\tSize"])
    write_url(f"{corpus}/test.en", ["one", "two"])
    write_url(f"{corpus}/test.de", ["eins"])
    config = DataConfig(source="files", data_dir=corpus)
    assert as_text(sources.load_pairs(config, "train")) == [
        ("A dog.", "Ein Hund."),
        ("Two cats.", "Zwei Katzen."),
    ]
    assert as_text(sources.load_pairs(config, "validation")) == [
        ("Hello.", "Hallo."),
        ("Größe", "Size"),
    ]
    with pytest.raises(ValueError) as error:
        sources.load_pairs(config, "test")
    assert str(error.value) == (
        f"Parallel files differ in length: {corpus}/test.en has 2 lines, {corpus}/test.de has 1"
    )
    with pytest.raises(FileNotFoundError) as missing:
        sources.load_pairs(DataConfig(source="files", data_dir=f"{corpus}/absent"), "train")
    assert str(missing.value).startswith(f"No train split in {corpus}/absent: expected train.en")
    assert os.listdir(tmp_path) == []


def test_invalid_utf8_at_a_url_names_file_and_line():
    url = "ram://sources_test/bad.tsv.gz"
    with tf.io.gfile.GFile(url, "wb") as file:
        file.write(gzip.compress(b"a\tb\ncaf\xe9\tc\n"))
    with pytest.raises(ValueError) as error:
        sources.tsv_pairs(url)
    assert (
        str(error.value)
        == f"{url}: line 2 is not valid UTF-8 (invalid continuation byte at byte 3)"
    )


def test_train_examples_keeps_the_first_training_pairs_and_lines_only():
    from tf_transformer.config import DataConfig
    from tf_transformer.data.sources import load_lines, load_pairs

    full = DataConfig(synthetic_train_size=40, synthetic_eval_size=7)
    limited = DataConfig(synthetic_train_size=40, synthetic_eval_size=7, train_examples=5)
    first = list(load_pairs(full, "train").take(5).as_numpy_iterator())
    assert list(load_pairs(limited, "train").as_numpy_iterator()) == first
    assert [line for line in load_lines(limited, "train", "de").as_numpy_iterator()] == [
        target for _, target in first
    ]
    assert len(list(load_pairs(limited, "validation"))) == 7
