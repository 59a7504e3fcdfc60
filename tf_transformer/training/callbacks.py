"""Keras callbacks for training runs: NaN guard, validation BLEU, checkpoint averaging."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np


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


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the optimizer has taken `steps` steps, so a resumed run
    ends at the configured step count wherever its last backup was taken."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.initial_step = 0

    def on_train_begin(self, logs=None):
        # Runs after BackupAndRestore (earlier in the callback list) has restored.
        self.initial_step = int(self.model.optimizer.iterations.numpy())
        if self.initial_step:
            print(f"Resuming from step {self.initial_step}")

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            self.model.stop_training = True


class ValidationBleu(keras.callbacks.Callback):
    """Adds `val_bleu` (sacreBLEU of greedy translations) to the logs after each
    validation, so `ModelCheckpoint` and `EarlyStopping` can monitor it.

    Args:
        score_fn: returns the BLEU of the current model on held-out sentences.
    """

    def __init__(self, score_fn: Callable[[], float]):
        super().__init__()
        self.score_fn = score_fn

    def on_epoch_end(self, epoch, logs=None):
        bleu = self.score_fn()
        if logs is not None:
            logs["val_bleu"] = bleu
        print(f"\nvalidation BLEU: {bleu:.2f}")


class AverageLastCheckpoints(keras.callbacks.Callback):
    """Saves weights after each validation and, at the end of training, sets the model
    to the average of the last `count` of them (Vaswani et al. average the last 5
    or 20 checkpoints).

    Args:
        directory: where `epoch_NNNN.weights.h5` files go.
        count: how many of the latest checkpoints to average.
    """

    def __init__(self, directory: str | Path, count: int):
        super().__init__()
        self.directory = Path(directory)
        self.count = count

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(self.directory / f"epoch_{epoch + 1:04d}.weights.h5")

    def on_train_end(self, logs=None):
        paths = sorted(self.directory.glob("epoch_*.weights.h5"))[-self.count :]
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
