"""Packing monolingual lines into fixed-length language-model sequences."""

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import DataConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.data import packing, sources


class NumberTokenizer:
    """Pieces are the whitespace-separated numbers of a line."""

    def tokenize(self, lines):
        return tf.strings.to_number(tf.strings.split(lines), tf.int32)


LINES = ["5 6 7", "", "8 9", "10 11 12 13 14"]
# BOS 5 6 7 EOS | BOS 8 9 EOS | BOS 10 11 12 13 14 EOS: 16 tokens.


def packed(training):
    lines = tf.data.Dataset.from_tensor_slices(LINES)
    return packing.pack_lines(lines, NumberTokenizer(), 4, training=training)


def test_training_packs_lines_back_to_back_and_counts_what_it_drops():
    text = packed(training=True)
    pairs = [(x.tolist(), y.tolist()) for x, y in text.dataset.as_numpy_iterator()]
    assert pairs == [
        ([BOS, 5, 6, 7], [5, 6, 7, EOS]),
        # The target after EOS is the next line's BOS: PAD, it counts zero.
        ([BOS, 8, 9, EOS], [8, 9, EOS, PAD]),
        ([10, 11, 12, 13], [11, 12, 13, 14]),
    ]
    assert text.report == packing.PackingReport(
        lines=3,
        dropped_empty=1,
        tokens=16,
        sequences=3,
        dropped_tail_tokens=1,
        real_token_share=1.0,
    )


def test_evaluation_pads_the_last_sequence_so_every_token_counts():
    text = packed(training=False)
    pairs = [(x.tolist(), y.tolist()) for x, y in text.dataset.as_numpy_iterator()]
    assert pairs[-1] == ([EOS, PAD, PAD, PAD], [PAD, PAD, PAD, PAD])
    assert text.report.sequences == 4 and text.report.dropped_tail_tokens == 0
    assert text.report.real_token_share == pytest.approx(16 / 20)


def test_packed_batches_have_one_static_shape_and_split_among_replicas():
    config = DataConfig(max_length=4, min_bucket_length=4, batch_tokens=16)
    context = tf.distribute.InputContext(num_input_pipelines=1, num_replicas_in_sync=2)
    batches = list(
        packing.make_packed_dataset(
            packed(training=False).dataset, config, context, training=False
        ).as_numpy_iterator()
    )
    # 16 tokens over 2 replicas: 2 sequences of 4 per replica; 4 sequences, no filler.
    assert [inputs.shape for inputs, _ in batches] == [(2, 4), (2, 4)]
    np.testing.assert_array_equal(batches[1][0], [[10, 11, 12, 13], [EOS, PAD, PAD, PAD]])


def test_a_corpus_of_empty_lines_is_an_error():
    lines = tf.data.Dataset.from_tensor_slices(["", " "])
    with pytest.raises(ValueError, match="train: no non-empty line"):
        packing.pack_lines(lines, NumberTokenizer(), 4, name="train")


def test_load_lines_reads_one_language_of_a_files_corpus(tmp_path):
    (tmp_path / "train.en").write_text("one\ntwo\n")  # no train.de: not needed
    config = DataConfig(source="files", data_dir=str(tmp_path))
    lines = [line.decode() for line in sources.load_lines(config, "train").as_numpy_iterator()]
    assert lines == ["one", "two"]


def test_load_lines_of_the_synthetic_corpus_is_its_english_side():
    config = DataConfig(synthetic_train_size=3, synthetic_eval_size=2)
    pairs = list(sources.load_pairs(config, "validation").as_numpy_iterator())
    lines = list(sources.load_lines(config, "validation").as_numpy_iterator())
    assert lines == [source for source, _ in pairs]
