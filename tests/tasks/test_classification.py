"""The classification task end to end on a tiny TSV corpus: training, scores, the
`classify` command, the SavedModel in a process without this package, fine-tuning."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tf_transformer import config as config_lib
from tf_transformer.cli import main
from tf_transformer.decoding.classifier import TextClassifier
from tf_transformer.serving.export import export_run
from tf_transformer.tasks import classification

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "a", "movie", "plot", "story", "acting", "really", "quite"]
TEXTS = ["the film was really superb", "a dull and boring plot", "quite a movie"]
TINY_CLASSIFIER = [
    "task=classification",
    "model.d_model=32",
    "model.ffn_dim=64",
    "model.num_layers=1",
    "model.max_length=32",
    "data.source=files",
    "data.vocab_size=60",
    "data.max_length=16",
    "data.min_bucket_length=8",
    "data.batch_tokens=256",
    "train.steps=60",
    "train.eval_every=60",
    "train.warmup_steps=20",
    "train.jit_compile=false",
]


def write_corpus(directory, train_labels=("positive", "negative")) -> None:
    generator = random.Random(0)
    for split, size in (("train", 400), ("validation", 60), ("test", 60)):
        lines = ["sentence\tlabel"]
        for _ in range(size):
            label = generator.choice(train_labels)
            words = generator.sample(FILLER, 3)
            words.append(generator.choice(POSITIVE if label == "positive" else NEGATIVE))
            generator.shuffle(words)
            lines.append(f"{' '.join(words)}\t{label}")
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def experiment(data_dir, *overrides):
    return config_lib.load(overrides=[*TINY_CLASSIFIER, f"data.data_dir={data_dir}", *overrides])


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sentiment")
    write_corpus(data_dir)
    run_dir = tmp_path_factory.mktemp("classifier_run")
    metrics = classification.train(experiment(data_dir), str(run_dir))
    return data_dir, run_dir, metrics


def test_training_learns_the_sentiment_words(classifier_run):
    _, run_dir, metrics = classifier_run
    assert metrics["labels"] == ["negative", "positive"]
    assert metrics["test_accuracy"] >= 90.0 and metrics["test_macro_f1"] >= 90.0
    assert metrics["history"]["loss"][-1] < 0.69
    assert (run_dir / "labels.txt").read_text() == "negative\npositive\n"
    predictions = TextClassifier.from_run(str(run_dir)).classify(TEXTS[:2])
    assert [prediction.label for prediction in predictions] == ["positive", "negative"]


def test_classify_prints_label_and_probability(classifier_run, capsys):
    _, run_dir, _ = classifier_run
    main(["classify", "--model", str(run_dir), *TEXTS])
    lines = capsys.readouterr().out.splitlines()
    expected = TextClassifier.from_run(str(run_dir)).classify(TEXTS)
    assert lines == [f"{p.label}\t{p.probability:.4f}" for p in expected]


def test_the_saved_model_gives_the_python_probabilities_without_the_package(
    classifier_run, tmp_path
):
    _, run_dir, _ = classifier_run
    version = export_run(str(run_dir), str(tmp_path / "export"))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["tf_transformer"] = None  # importing the package would fail
        import tensorflow as tf, tensorflow_text  # noqa: F401
        model = tf.saved_model.load({version!r})
        outputs = model.signatures["serving_default"](inputs=tf.constant({TEXTS!r}))
        print(json.dumps({{"labels": [t.decode() for t in outputs["label"].numpy()],
                          "probabilities": outputs["probabilities"].numpy().tolist()}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.splitlines()[-1])
    classifier = TextClassifier.from_run(str(run_dir))
    assert served["labels"] == [p.label for p in classifier.classify(TEXTS)]
    np.testing.assert_allclose(
        served["probabilities"], classifier.probabilities(TEXTS), atol=1e-5, rtol=0
    )


def test_init_from_copies_the_encoder_and_the_vocabulary(classifier_run, tmp_path):
    data_dir, run_dir, _ = classifier_run
    experiment_config = experiment(
        data_dir,
        "train.steps=1",
        "train.eval_every=1",
        f"train.init_from={run_dir}",
        "train.peak_learning_rate=1e-9",
    )
    classification.train(experiment_config, str(tmp_path / "fine_tuned"))
    assert (tmp_path / "fine_tuned/sentencepiece.model").read_bytes() == (
        run_dir / "sentencepiece.model"
    ).read_bytes()
    before = TextClassifier.from_run(str(run_dir))
    after = TextClassifier.from_run(str(tmp_path / "fine_tuned"))
    # One step at a learning rate of 1e-9: the same encoder, so the same pooled states.
    token_ids = np.array([[7, 8, 9, 3]], np.int32)
    np.testing.assert_allclose(
        after.model.pooled(token_ids, training=False),
        before.model.pooled(token_ids, training=False),
        atol=1e-5,
    )


def test_init_from_a_language_model_or_another_vocabulary_is_an_error(
    classifier_run, tiny_lm_run, tmp_path
):
    data_dir, run_dir, _ = classifier_run
    with pytest.raises(ValueError, match="is a language_model run; a classification model"):
        classification.train(
            experiment(data_dir, f"train.init_from={tiny_lm_run}"), str(tmp_path / "a")
        )
    # A run directory that already holds another vocabulary cannot fine-tune from this one.
    other = tmp_path / "other"
    other.mkdir()
    (other / "sentencepiece.model").write_bytes((tiny_lm_run / "sentencepiece.model").read_bytes())
    with pytest.raises(ValueError, match="already holds a run with another vocabulary"):
        classification.train(experiment(data_dir, f"train.init_from={run_dir}"), str(other))


def test_init_from_a_run_of_another_block_design_is_an_error_naming_the_key(
    classifier_run, tmp_path
):
    # Same shapes, another function: the weights would load and silently mean something else.
    data_dir, run_dir, _ = classifier_run
    with pytest.raises(ValueError, match="model.activation is gelu here and relu in"):
        classification.train(
            experiment(data_dir, f"train.init_from={run_dir}", "model.activation=gelu"),
            str(tmp_path / "gelu"),
        )


def test_a_label_unseen_in_training_is_an_error_naming_the_line(tmp_path):
    write_corpus(tmp_path)
    with open(tmp_path / "test.tsv", "a") as file:
        file.write("a neutral film\tneutral\n")
    with pytest.raises(ValueError, match=r"test.tsv: line 62 has the label 'neutral'"):
        classification.train(experiment(tmp_path), str(tmp_path / "run"))


def test_the_cli_exits_non_zero_on_a_single_class_training_file(tmp_path, capsys):
    write_corpus(tmp_path, train_labels=("positive",))
    arguments = ["train", "--set", *TINY_CLASSIFIER, f"data.data_dir={tmp_path}"]
    assert main([*arguments, "--output-dir", str(tmp_path / "run")]) == 2
    assert "every example has the label 'positive'" in capsys.readouterr().err


def test_evaluate_scores_a_tsv_file_and_translate_names_the_right_command(classifier_run, capsys):
    data_dir, run_dir, metrics = classifier_run
    assert (
        main(["evaluate", "--model", str(run_dir), "--src", str(data_dir / "test.tsv"), "--json"])
        == 0
    )
    results = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert results == {
        "accuracy": metrics["test_accuracy"],
        "macro_f1": metrics["test_macro_f1"],
        "examples": 60,
    }
    assert main(["translate", "--model", str(run_dir)]) == 2
    assert "is a classification run, not a translation model: use tf-transformer classify" in (
        capsys.readouterr().err
    )
