"""Labelled TSV files: checks that name the file and line, labels, batches."""

from __future__ import annotations

import numpy as np
import pytest

from tf_transformer.config import DataConfig
from tf_transformer.constants import EOS, PAD
from tf_transformer.data import classification


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_header_is_skipped_and_integer_labels_sort_numerically(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\na b\t10\nc\t2\nd e f\t10\n")
    examples = classification.read_labelled_tsv(path)
    assert examples.texts == ["a b", "c", "d e f"] and examples.line_numbers == [2, 3, 4]
    names = classification.label_names(examples)
    assert names == ["2", "10"]
    assert classification.class_ids(examples, names) == [1, 0, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("good film\t1\nno tab here\n", "line 2 has no tab"),
        ("good film\t1\n  \t0\n", "line 2 has an empty text"),
        ("good film\t1\nbad\t\n", "line 2 has an empty label"),
        ("sentence\tlabel\n", "no examples"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "train.tsv", content)
    with pytest.raises(ValueError, match=message) as error:
        classification.read_labelled_tsv(path)
    assert path in str(error.value)


def test_a_single_class_training_file_and_an_unseen_label_are_errors(tmp_path):
    single = classification.read_labelled_tsv(write(tmp_path / "train.tsv", "a\tpos\nb\tpos\n"))
    with pytest.raises(ValueError, match="every example has the label 'pos'.*two classes"):
        classification.label_names(single)
    test = classification.read_labelled_tsv(write(tmp_path / "test.tsv", "a\tpos\nb\tneutral\n"))
    with pytest.raises(ValueError, match=r"test.tsv: line 2 has the label 'neutral'"):
        classification.class_ids(test, ["neg", "pos"])


def test_classification_reads_files_only(tmp_path):
    with pytest.raises(ValueError, match='data.source="files"'):
        classification.split_path(DataConfig(), "train")
    config = DataConfig(source="files", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No test.tsv"):
        classification.split_path(config, "test")


def test_batches_cut_long_texts_and_pad_evaluation_rows_with_zero_weight(
    tmp_path, synthetic_tokenizer
):
    lines = ["the dog sees the cat", "a", "the big dog sees the small cat today"]
    path = write(
        tmp_path / "train.tsv", "".join(f"{line}\t{i % 2}\n" for i, line in enumerate(lines))
    )
    examples = classification.read_labelled_tsv(path)
    tokenized = classification.tokenize_examples(examples, [0, 1, 0], synthetic_tokenizer, 6)
    lengths = [len(ids) for ids, _ in tokenized.dataset.as_numpy_iterator()]
    assert max(lengths) == 6 and tokenized.truncated == sum(
        len(pieces) > 5 for pieces in synthetic_tokenizer.tokenize(lines).to_list()
    )
    config = DataConfig(max_length=8, min_bucket_length=8, batch_tokens=32)
    batches = list(
        classification.make_dataset(tokenized.dataset, config, training=False).as_numpy_iterator()
    )
    ids, labels, weights = (np.concatenate(parts) for parts in zip(*batches, strict=True))
    assert ids.shape == (4, 8)  # 32 tokens / 8 = 4 rows: three examples and one filler row
    np.testing.assert_array_equal(weights, [1, 1, 1, 0])
    np.testing.assert_array_equal(labels, [0, 1, 0, 0])
    assert (ids[3] == PAD).all()
    assert all(row[row != PAD][-1] == EOS for row in ids[:3])
    # Training drops a partial batch: 3 examples never fill 4 rows.
    training = classification.make_dataset(tokenized.dataset, config, training=True)
    assert list(training.as_numpy_iterator()) == []
