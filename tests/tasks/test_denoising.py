"""Denoising pretraining on the synthetic corpus, and translation fine-tuned from it."""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece

from tf_transformer import config as config_lib
from tf_transformer.cli import main
from tf_transformer.constants import FIRST_SENTINEL, MASK
from tf_transformer.data import sources
from tf_transformer.tasks import denoising, translation
from tf_transformer.training.pretrained import load_pretrained_model

TINY_SHAPE = [
    "model.d_model=32",
    "model.ffn_dim=64",
    "model.num_encoder_layers=1",
    "model.num_decoder_layers=1",
    "model.max_length=32",
    "data.synthetic_train_size=300",
    "data.synthetic_eval_size=10",
    "data.vocab_size=200",
    "data.max_length=32",
    "data.batch_tokens=256",
    "train.jit_compile=false",
]
TINY_PRETRAINING = [
    "task=denoising",
    *TINY_SHAPE,
    "data.extra_ids=4",
    "denoising.languages=en,de",
    "train.steps=20",
    "train.eval_every=10",
]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pretrained")
    metrics = denoising.train(config_lib.load(overrides=TINY_PRETRAINING), str(run_dir))
    return run_dir, metrics


def test_pretraining_reserves_the_pieces_and_lowers_the_loss(pretrained_run):
    run_dir, metrics = pretrained_run
    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(run_dir / "sentencepiece.model")
    )
    pieces = [processor.id_to_piece(index) for index in range(MASK, FIRST_SENTINEL + 4)]
    assert pieces == ["<mask>", "<extra_id_0>", "<extra_id_1>", "<extra_id_2>", "<extra_id_3>"]
    assert metrics["languages"] == ["en", "de"]
    assert (metrics["inputs_length"], metrics["raw_tokens_per_window"]) == (32, 34)
    assert metrics["packing"]["train"]["real_token_share"] == 1.0
    loss = metrics["history"]["loss"]
    assert loss[1] < loss[0]


def test_translation_fine_tuned_from_it_starts_from_its_weights(pretrained_run, tmp_path):
    run_dir, _ = pretrained_run
    fine_tune = config_lib.load(
        overrides=[
            *TINY_SHAPE,
            "train.steps=1",
            "train.eval_every=1",
            "train.bleu_sentences=2",
            "train.peak_learning_rate=1e-9",
            f"train.init_from={run_dir}",
        ]
    )
    translation.train(fine_tune, str(tmp_path / "fine_tuned"))
    before = load_pretrained_model(str(run_dir))
    after = load_pretrained_model(str(tmp_path / "fine_tuned"))
    assert len(before.weights) == len(after.weights)
    for old, new in zip(before.weights, after.weights, strict=True):
        np.testing.assert_allclose(np.asarray(new), np.asarray(old), atol=1e-6, err_msg=old.path)


def test_a_vocabulary_without_the_sentinels_and_a_wrong_task_are_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="data.extra_ids=0: span_corruption .* set data.extra_ids"):
        denoising.train(
            config_lib.load(overrides=[*TINY_PRETRAINING, "data.extra_ids=0"]), str(tmp_path)
        )
    assert main(["pretrain", "--set", "task=language_model", "--output-dir", str(tmp_path)]) == 2
    assert "pretrain trains task denoising" in capsys.readouterr().err


def test_translation_cannot_start_from_a_language_model(tiny_lm_run, tmp_path):
    with pytest.raises(ValueError, match="is a language_model run; a translation model"):
        translation.train(
            config_lib.load(overrides=[*TINY_SHAPE, f"train.init_from={tiny_lm_run}"]),
            str(tmp_path),
        )


def test_pretraining_text_is_each_language_shuffled_plus_the_extra_files(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("first extra line\nsecond extra line\n")
    experiment = config_lib.load(
        overrides=[*TINY_PRETRAINING, f"denoising.extra_text_files={extra}"]
    )
    lines = [
        line.decode()
        for line in denoising.monolingual_lines(experiment, "train").as_numpy_iterator()
    ]
    english = [
        s.decode() for s, _ in sources.load_pairs(experiment.data, "train").as_numpy_iterator()
    ]
    german = [
        t.decode() for _, t in sources.load_pairs(experiment.data, "train").as_numpy_iterator()
    ]
    assert sorted(lines) == sorted(english + german + ["first extra line", "second extra line"])
    assert lines[:300] != english and sorted(lines[:300]) == sorted(english)
    # The two sides are shuffled independently: line i of each side is no longer a pair.
    pairs = set(zip(english, german, strict=True))
    assert sum((e, g) in pairs for e, g in zip(lines[:300], lines[300:600], strict=True)) < 10
    validation = list(denoising.monolingual_lines(experiment, "validation"))
    assert len(validation) == 20  # no extra text in validation


def test_pretraining_text_of_a_labelled_tsv_is_its_text_column_without_the_header(tmp_path):
    """SST-2's layout (sentence<TAB>label under a header line), as configs/pretrain_sst2.yaml
    reads it: the header's "sentence" is not a line of text."""
    for split, rows in {
        "train": ["good film\t1", "bad film\t0"],
        "validation": ["fine\t1"],
    }.items():
        (tmp_path / f"{split}.tsv").write_text("\n".join(["sentence\tlabel", *rows]) + "\n")
    experiment = config_lib.load(
        overrides=[*TINY_PRETRAINING, "data.source=files", f"data.data_dir={tmp_path}"]
        + ["denoising.languages=en"]
    )
    lines = denoising.monolingual_lines(experiment, "train").as_numpy_iterator()
    assert sorted(line.decode() for line in lines) == ["bad film", "good film"]
    validation = denoising.monolingual_lines(experiment, "validation").as_numpy_iterator()
    assert [line.decode() for line in validation] == ["fine"]
