"""Keras callbacks for training runs: NaN guard, step limit, validation score,
checkpoint averaging, and a backup that only restores (for non-chief workers)."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the first batch whose loss is not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which only sets `stop_training`, raising
    stops the callbacks after this one from running for that batch: placed before
    `BackupAndRestore`, it keeps the last good backup from being overwritten by
    NaN weights.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(
                f"Loss became {float(loss)} at step {step}; training stopped. The last "
                "good backup and checkpoints are kept. Lower train.peak_learning_rate, "
                "raise train.warmup_steps or set train.clip_norm, then rerun to resume."
            )


def optimizer_updates(optimizer: keras.optimizers.Optimizer) -> int:
    """Updates the optimizer has applied (under gradient accumulation Keras's
    `iterations` counts updates, its private `_iterations` every batch)."""
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the optimizer has made `steps` updates, so a resumed run
    ends at the configured step count wherever its last backup was taken."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.initial_step = 0

    def on_train_begin(self, logs=None):
        # Runs after BackupAndRestore (earlier in the callback list) has restored.
        self.initial_step = optimizer_updates(self.model.optimizer)
        if self.initial_step:
            print(f"Resuming from step {self.initial_step}")

    def on_train_batch_end(self, batch, logs=None):
        if optimizer_updates(self.model.optimizer) >= self.steps:
            self.model.stop_training = True


class ValidationScore(keras.callbacks.Callback):
    """Adds `val_NAME` (a score of the current model on held-out data, e.g. BLEU) to the
    logs after each validation, so `ModelCheckpoint` and `EarlyStopping` can monitor it.

    Args:
        name: the score's name; the log key is `val_NAME`.
        score_fn: returns the score of the current model.
    """

    def __init__(self, name: str, score_fn: Callable[[], float]):
        super().__init__()
        self.name = name
        self.score_fn = score_fn

    def on_epoch_end(self, epoch, logs=None):
        score = self.score_fn()
        if logs is not None:
            logs[f"val_{self.name}"] = score
        print(f"\nvalidation {self.name}: {score:.2f}")


class RestoreOnlyBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` for a non-chief worker: restores from the chief's backup (the
    same weights: workers hold identical replicas) and never writes."""

    def _save_model(self):
        pass


class AverageLastCheckpoints(keras.callbacks.Callback):
    """Saves weights after each validation and, at the end of training, sets the model
    to the average of the last `count` of them (Vaswani et al. average the last 5
    or 20 checkpoints).

    Args:
        directory: where `epoch_NNNN.weights.h5` files go.
        count: how many of the latest checkpoints to average.
    """

    def __init__(self, directory: str, count: int):
        super().__init__()
        self.directory = str(directory).rstrip("/")
        self.count = count

    def on_epoch_end(self, epoch, logs=None):
        tf.io.gfile.makedirs(self.directory)
        self.model.save_weights(f"{self.directory}/epoch_{epoch + 1:04d}.weights.h5")

    def on_train_end(self, logs=None):
        paths = sorted(tf.io.gfile.glob(f"{self.directory}/epoch_*.weights.h5"))[-self.count :]
        if len(paths) < 2:
            return
        summed = None
        for path in paths:
            self.model.load_weights(path)
            weights = self.model.get_weights()
            summed = (
                weights if summed is None else [s + w for s, w in zip(summed, weights, strict=True)]
            )
        self.model.set_weights([np.asarray(s) / len(paths) for s in summed])
        print(f"Averaged the weights of the last {len(paths)} checkpoints.")
