"""End-to-end runs of `train` / `tf-transformer train` on a tiny synthetic corpus."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tf_transformer import config
from tf_transformer.tasks.translation import train

TINY_RUN = [
    "model.d_model=32",
    "model.ffn_dim=64",
    "model.num_encoder_layers=1",
    "model.num_decoder_layers=1",
    "model.max_length=64",
    "data.synthetic_train_size=400",
    "data.synthetic_eval_size=20",
    "data.vocab_size=150",
    "data.batch_tokens=512",
    "train.warmup_steps=10",
    "train.peak_learning_rate=3e-3",
    "train.bleu_sentences=8",
]


@pytest.mark.slow  # a whole train() with its test decoding and export
def test_train_writes_a_complete_run_directory_that_can_move(tmp_path, monkeypatch):
    """A run trained with a relative output directory, then moved, translates and
    evaluates from a third working directory."""
    from tf_transformer.decoding.translator import Translator

    first, third = tmp_path / "first", tmp_path / "third"
    first.mkdir()
    third.mkdir()
    monkeypatch.chdir(first)
    experiment = config.load(
        overrides=[*TINY_RUN, "train.steps=20", "train.eval_every=10", "train.jit_compile=false"]
    )
    metrics = train(experiment, "runs/relative", export_path="exported")
    run = first / "runs" / "relative"
    for name in ("config.yaml", "sentencepiece.model", "model.keras", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.weights.h5").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert metrics["saved_model"] == "exported/1"
    assert (first / "exported" / "1" / "saved_model.pb").is_file()
    assert metrics["steps"] == 20 and metrics["initial_step"] == 0
    assert len(metrics["history"]["val_bleu"]) == 2
    losses = metrics["history"]["loss"]
    assert losses[1] < losses[0]
    dropped = metrics["dropped_pairs"]["train"]
    assert dropped["kept"] + dropped["dropped_empty"] + dropped["dropped_too_long"] == 400
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["bleu"] == metrics["bleu"]
    resolved = config.load([run / "config.yaml"])
    assert resolved.model.source_vocab_size == 150
    # Relative to the run, so that the run can move.
    assert resolved.data.vocabulary_prefix == "sentencepiece"

    sentences = [sample["source"] for sample in metrics["samples"]]
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    run.rename(moved)
    monkeypatch.chdir(third)
    translator = Translator.from_run(str(moved))
    assert translator.translate(sentences) == [
        sample["translation"] for sample in metrics["samples"]
    ]


@pytest.mark.slow
def test_a_whole_run_lives_in_an_in_memory_filesystem(tmp_path, monkeypatch):
    """Paths are URLs: train, translate, evaluate and reload the export in ram://, and
    nothing lands on local disk under a "ram:" folder. Trained under mixed_bfloat16,
    model.keras and the export hold float32 weights and compute in float32."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from tf_transformer.decoding.translator import Translator
    from tf_transformer.evaluation.test_set import evaluate_files

    monkeypatch.chdir(tmp_path)
    experiment = config.load(
        overrides=[
            *TINY_RUN,
            "train.steps=4",
            "train.eval_every=4",
            "train.jit_compile=false",
            "train.precision=mixed_bfloat16",
        ]
    )
    metrics = train(experiment, "ram://r/run", export_path="ram://r/sm")
    assert metrics["saved_model"] == "ram://r/sm/1"
    translator = Translator.from_run("ram://r/run")
    assert translator.model.compute_dtype == "float32"
    assert {weight.dtype for weight in translator.model.weights} == {"float32"}
    sentences = ["The dog sees the ball.", "Now we have danced."]
    with tf.io.gfile.GFile("ram://r/test.en", "w") as source_file:
        source_file.write("\n".join(sentences) + "\n")
    with tf.io.gfile.GFile("ram://r/test.de", "w") as reference_file:
        reference_file.write("Der Hund sieht den Ball.\nJetzt haben wir getanzt.\n")
    scores = evaluate_files(translator, "ram://r/test.en", "ram://r/test.de")
    assert scores["sentences"] == 2
    reloaded = tf.saved_model.load("ram://r/sm/1")
    assert {variable.dtype for variable in reloaded.variables} <= {tf.float32, tf.int64}
    served = reloaded.signatures["serving_default"](inputs=tf.constant(sentences))
    assert [text.decode() for text in served["outputs"].numpy()] == translator.translate(sentences)
    assert not any(name.startswith(("ram", "gs:")) for name in os.listdir(tmp_path))


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_backup_and_ends_at_the_configured_step(tmp_path):
    command = [
        sys.executable,
        "-m",
        "tf_transformer.cli",
        "train",
        *(f"--set={override}" for override in TINY_RUN),
        "--set=train.steps=60",
        "--set=train.eval_every=30",
        "--set=train.backup_every=5",
        "--set=train.jit_compile=false",
        f"--output-dir={tmp_path / 'run'}",
        f"--export-dir={tmp_path}",
    ]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    first = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    backup = tmp_path / "run" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while not backup.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backup.exists(), first.stderr.read().decode()[-3000:] if first.poll() else "no backup"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "run" / "metrics.json").exists()

    second = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["initial_step"] > 0
    assert metrics["steps"] == 60
    assert f"Resuming from step {metrics['initial_step']}" in second.stdout
