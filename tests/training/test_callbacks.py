import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import ModelConfig, TrainConfig
from tf_transformer.constants import BOS, EOS
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.callbacks import (
    AverageLastCheckpoints,
    NonFiniteLossError,
    StopAtStep,
    optimizer_updates,
)
from tf_transformer.training.fit import (
    compile_for_training,
    fit_model,
    resumed_batches,
    training_callbacks,
)
from tf_transformer.training.schedules import InverseSquareRootSchedule


def linear_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def batches_with_nan_at(step, total=6):
    inputs = np.ones((total, 1, 2), "float32")
    inputs[step] = np.nan
    return tf.data.Dataset.from_tensor_slices((inputs, np.ones((total, 1, 1), "float32")))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_backup(tmp_path):
    model = linear_model()
    config = TrainConfig(steps=6, eval_every=6, backup_every=1)
    callbacks = training_callbacks(
        str(tmp_path), config, StopAtStep(6), validation_score=("bleu", lambda: 0.0)
    )
    good_weights = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: good_weights.append(model.get_weights())
    )
    with pytest.raises(NonFiniteLossError, match=r"Loss became nan at step 4; training stopped"):
        model.fit(batches_with_nan_at(step=3), epochs=1, callbacks=[record, *callbacks], verbose=0)
    restored = linear_model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(tmp_path / "backup" / "latest.weights.h5")
    assert int(restored.optimizer.iterations.numpy()) == 3
    for restored_weight, good_weight in zip(restored.get_weights(), good_weights[2], strict=True):
        np.testing.assert_array_equal(restored_weight, good_weight)
    metadata = json.loads(Path(tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata == {"epoch": 0, "batch": 2}


def test_stop_at_step_ends_training_at_the_configured_step():
    model = linear_model()
    data = tf.data.Dataset.from_tensors((np.ones((1, 2)), np.ones((1, 1)))).repeat()
    model.fit(data, epochs=3, steps_per_epoch=4, callbacks=[StopAtStep(6)], verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 6


def test_average_last_checkpoints_sets_the_mean_weights(tmp_path):
    model = linear_model()
    data = tf.data.Dataset.from_tensors((np.ones((1, 2)), np.ones((1, 1)))).repeat()
    per_epoch = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: per_epoch.append(model.get_weights())
    )
    model.fit(
        data,
        epochs=3,
        steps_per_epoch=2,
        callbacks=[record, AverageLastCheckpoints(tmp_path, count=2)],
        verbose=0,
    )
    expected = [(a + b) / 2 for a, b in zip(per_epoch[1], per_epoch[2], strict=True)]
    for weight, mean in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(weight, mean, rtol=1e-6)


def test_gradient_accumulation_counts_optimizer_updates(tmp_path):
    """steps, warmup, eval_every and backup_every count updates, not micro-batches."""
    model = Seq2SeqTransformer(
        ModelConfig.preset(
            "tiny", source_vocab_size=16, target_vocab_size=16, d_model=16, ffn_dim=16
        )
    )
    model.build()
    config = TrainConfig(
        gradient_accumulation_steps=4,
        steps=12,
        eval_every=6,
        backup_every=3,
        warmup_steps=5,
        jit_compile=False,
    )
    compile_for_training(model, config)
    features = {
        "encoder_inputs": np.array([[5, 6, EOS]], "int32"),
        "decoder_inputs": np.array([[BOS, 7]], "int32"),
    }
    batches = tf.data.Dataset.from_tensors((features, np.array([[7, EOS]], "int32"))).repeat()
    history, _ = fit_model(model, batches, None, config, str(tmp_path))
    assert optimizer_updates(model.optimizer) == 12
    assert int(model.optimizer._iterations.numpy()) == 48  # batches
    assert len(history.history["loss"]) == 2  # one epoch per eval_every updates
    # Update k (0-based) is applied at the last of its 4 batches, at the schedule's rate k.
    schedule = InverseSquareRootSchedule(config.peak_learning_rate, config.warmup_steps)
    for update in range(12):
        model.optimizer._iterations.assign(4 * update + 3)
        assert float(model.optimizer.learning_rate) == pytest.approx(float(schedule(update)))
    metadata = json.loads(Path(tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata == {"epoch": 1, "batch": 23}  # saved every 3 updates = 12 batches


def test_a_resumed_run_counts_the_batches_its_backup_holds(tmp_path):
    config = TrainConfig(eval_every=10, gradient_accumulation_steps=2)
    assert resumed_batches(str(tmp_path), config) == 0
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 4}')
    assert resumed_batches(str(tmp_path), config) == 2 * 20 + 5


def test_progress_is_one_plain_line_per_epoch_off_a_terminal(capsys):
    """Off a terminal (here pytest's captured stdout) fit's progress has no carriage
    return and no ANSI code: one line per epoch; a terminal gets the redrawn bar."""
    import io

    from tf_transformer.progress import progress_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_verbosity(Terminal()) == 1 and progress_verbosity(io.StringIO()) == 2
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensors((np.ones((4, 2)), np.ones((4, 1)))).repeat()
    model.fit(data, steps_per_epoch=50, epochs=3, verbose=progress_verbosity())
    printed = capsys.readouterr().out
    assert "\r" not in printed and "\x1b[" not in printed
    assert len([line for line in printed.splitlines() if "loss" in line]) == 3
