import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import ModelConfig, TrainConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.fit import compile_for_training
from tf_transformer.training.losses import (
    MaskedLabelSmoothedCrossEntropy,
    label_smoothed_token_losses,
)

# A global batch of 4 whose halves hold different numbers of real target tokens.
SOURCES = np.array([[5, 6, 7, EOS], [8, EOS, PAD, PAD], [9, 10, EOS, PAD], [11, 12, 13, EOS]])
DECODER_INPUTS = np.array(
    [[BOS, 14, 15, 16], [BOS, 17, PAD, PAD], [BOS, PAD, PAD, PAD], [BOS, 18, 19, PAD]]
)
TARGETS = np.array(
    [[14, 15, 16, EOS], [17, EOS, PAD, PAD], [EOS, PAD, PAD, PAD], [18, 19, EOS, PAD]]
)
FEATURES = {
    "encoder_inputs": SOURCES.astype("int32"),
    "decoder_inputs": DECODER_INPUTS.astype("int32"),
}


def tiny_model():
    return Seq2SeqTransformer(
        ModelConfig.preset(
            "tiny", source_vocab_size=24, target_vocab_size=24, d_model=32, ffn_dim=64, dropout=0.0
        )
    )


def test_mirrored_strategy_gives_the_single_device_loss(two_cpu_strategy):
    loss = MaskedLabelSmoothedCrossEntropy(0.1)
    single_device = tiny_model()
    expected = float(loss(TARGETS, single_device(FEATURES)))
    with two_cpu_strategy.scope():
        mirrored = tiny_model()
        mirrored.build()
    mirrored.set_weights(single_device.get_weights())
    dataset = tf.data.Dataset.from_tensors((FEATURES, TARGETS.astype("int32"))).unbatch().batch(4)
    batch = next(iter(two_cpu_strategy.experimental_distribute_dataset(dataset)))
    per_replica = two_cpu_strategy.run(
        lambda features, targets: loss(targets, mirrored(features)), args=batch
    )
    assert float(two_cpu_strategy.reduce("SUM", per_replica, axis=None)) == pytest.approx(
        expected, abs=1e-5
    )


@pytest.mark.slow
def test_default_config_reports_the_global_loss_under_xla_with_uneven_replicas(
    two_cpu_strategy,
):
    """The default TrainConfig (XLA on) under MirroredStrategy, with the two replicas
    holding batches of 3 and 1 rows: fit runs, and the reported loss of its one step is
    the global per-token loss of the 4 rows on one device."""
    single_device = tiny_model()
    token_losses = label_smoothed_token_losses(TARGETS, single_device(FEATURES), 0.1)
    real_tokens = TARGETS != PAD
    expected = float(np.sum(np.asarray(token_losses) * real_tokens) / real_tokens.sum())
    # The default config, but for an Adam step proportional to the gradient (a large
    # epsilon), so comparing updates compares gradients.
    train_config = TrainConfig(epsilon=1.0, peak_learning_rate=1.0, warmup_steps=1)
    assert train_config.jit_compile
    with two_cpu_strategy.scope():
        mirrored = tiny_model()
        mirrored.build()
        compile_for_training(mirrored, train_config)
    mirrored.set_weights(single_device.get_weights())
    examples = (FEATURES, TARGETS.astype("int32"))
    # One input pipeline feeds the replicas in turn: 3 rows to the first, 1 to the second.
    uneven = two_cpu_strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensors(examples).unbatch().batch(3).repeat()
    )
    history = mirrored.fit(uneven, epochs=1, steps_per_epoch=1, verbose=0)
    assert mirrored._compile_per_replica
    assert history.history["loss"][0] == pytest.approx(expected, abs=1e-5)
    # The update is the single-device update on the whole batch: the gradients are right.
    compile_for_training(single_device, train_config)
    single_device.fit(
        tf.data.Dataset.from_tensors(examples).repeat(), epochs=1, steps_per_epoch=1, verbose=0
    )
    for after_mirrored, after_single in zip(
        mirrored.get_weights(), single_device.get_weights(), strict=True
    ):
        np.testing.assert_allclose(after_mirrored, after_single, atol=1e-5)


def test_model_fit_trains_under_mirrored_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        model = tiny_model()
        model.build()
        # XLA under this strategy: the slow test above; this one is about learning.
        compile_for_training(
            model, TrainConfig(jit_compile=False, warmup_steps=1, peak_learning_rate=3e-3)
        )
    dataset = two_cpu_strategy.distribute_datasets_from_function(
        lambda context: (
            tf.data.Dataset.from_tensors((FEATURES, TARGETS.astype("int32")))
            .unbatch()
            .batch(context.get_per_replica_batch_size(4))
            .shard(context.num_input_pipelines, context.input_pipeline_id)
            .repeat()
        )
    )
    history = model.fit(dataset, epochs=15, steps_per_epoch=1, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_with_xla_and_only_the_chief_writes(tmp_path):
    """`train` on two workers (127.0.0.1, TF_CONFIG), XLA on, one shared run directory:
    the workers end with the same weights, and the run holds one copy of each file."""
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    script = Path(__file__).with_name("multi_worker_job.py")
    run_dir, export_dir, scratch = tmp_path / "run", tmp_path / "exported", tmp_path / "tmp"
    scratch.mkdir()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                ),
                str(run_dir),
                str(export_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(scratch)},
        )
        for i in range(2)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    chief, other = results
    assert chief["losses"] == pytest.approx(other["losses"], rel=1e-6)
    assert chief["checksum"] == pytest.approx(other["checksum"], rel=1e-6)
    assert chief["losses"][1] < chief["losses"][0]
    assert sorted(os.listdir(run_dir)) == [
        "backup",
        "checkpoints",
        "config.yaml",
        "logs",
        "metrics.json",
        "model.keras",
        "sentencepiece.model",
        "sentencepiece.vocab",
    ]
    assert sorted(os.listdir(run_dir / "checkpoints")) == [
        "best.weights.h5",
        "epoch_0001.weights.h5",
        "epoch_0002.weights.h5",
    ]
    assert os.listdir(export_dir) == ["1"]
    assert not [name for name in os.listdir(scratch) if name.startswith("tf_transformer")]
    keras.backend.clear_session()
