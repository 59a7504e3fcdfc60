"""A generic `model.fit` for every task: optimizer, loss and metrics, the callbacks of a
run directory (backup and resume, best checkpoint by a named validation score,
TensorBoard, early stopping, checkpoint averaging) and the step budget.

It knows nothing of BLEU, decoding or SavedModels: a task (tf_transformer.tasks) hands
it a model, datasets and, optionally, the validation score to monitor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tf_transformer.config import TrainConfig, join_path
from tf_transformer.progress import progress_verbosity
from tf_transformer.training.callbacks import (
    AverageLastCheckpoints,
    RestoreOnlyBackup,
    StopAtStep,
    StopOnNonFiniteLoss,
    ValidationScore,
)
from tf_transformer.training.losses import (
    MaskedAccuracy,
    MaskedLabelSmoothedCrossEntropy,
    MaskedPerplexity,
)
from tf_transformer.training.schedules import InverseSquareRootSchedule


def resolve_precision(precision: str, strategy: tf.distribute.Strategy) -> str:
    """The Keras dtype policy for `precision`; "auto" picks by the strategy's devices."""
    if precision != "auto":
        return precision
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam or AdamW on the warmup + inverse-sqrt schedule. Under the mixed_float16
    policy `model.compile` wraps it in a LossScaleOptimizer."""
    options: dict[str, Any] = dict(
        learning_rate=InverseSquareRootSchedule(
            config.peak_learning_rate,
            config.warmup_steps,
            batches_per_update=config.gradient_accumulation_steps,
        ),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        global_clipnorm=config.clip_norm or None,
        gradient_accumulation_steps=(
            config.gradient_accumulation_steps if config.gradient_accumulation_steps > 1 else None
        ),
    )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **options)
    return keras.optimizers.Adam(**options)


def compile_for_training(
    model: keras.Model,
    config: TrainConfig,
    loss: keras.losses.Loss | None = None,
    weighted_metrics: list | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> None:
    """Compiles `model` with the optimizer of `config` (or `optimizer`) and the
    token-level loss and metrics of the sequence tasks, or `loss` and `weighted_metrics`
    (which datasets of (inputs, targets, sample weights) weigh) when given."""
    if loss is None:
        loss = MaskedLabelSmoothedCrossEntropy(config.label_smoothing)
        metrics = [MaskedAccuracy(), MaskedPerplexity()]
    else:
        metrics = None
    model.compile(
        optimizer=optimizer or build_optimizer(config),
        loss=loss,
        metrics=metrics,
        weighted_metrics=weighted_metrics,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )


def freeze_layers(model: keras.Model, names: str) -> list[str]:
    """Sets `trainable=False` on the layers of `model` named (or name-prefixed) by the
    comma-separated `names`; returns the layers frozen.

    Raises:
        ValueError: a name matches no layer (the message lists the layers).
    """
    frozen = []
    for prefix in (name.strip() for name in names.split(",") if name.strip()):
        matches = [layer for layer in model.layers if layer.name.startswith(prefix)]
        if not matches:
            raise ValueError(
                f"train.frozen_layers: no layer of {type(model).__name__} is named "
                f"{prefix!r}...; its layers: {', '.join(layer.name for layer in model.layers)}"
            )
        for layer in matches:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def training_callbacks(
    run_dir: str,
    config: TrainConfig,
    stop_at_step: StopAtStep,
    validation_score: tuple[str, Callable[[], float]] | None = None,
    scratch_dir: str | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, in the order they must run.

    `validation_score`: (name, function) of a score to compute after each validation,
    higher is better; the best checkpoint and early stopping follow it (else they follow
    the validation loss). `scratch_dir`: given on a non-chief worker, which then writes
    only there and restores from the chief's backup in `run_dir`.
    """
    monitor, mode = ("val_loss", "min")
    if validation_score:
        monitor, mode = f"val_{validation_score[0]}", "max"
    batches_per_update = config.gradient_accumulation_steps
    backup_dir = join_path(run_dir, "backup")
    backup = (
        keras.callbacks.BackupAndRestore(
            backup_dir,
            save_freq=config.backup_every * batches_per_update,
            delete_checkpoint=False,
            # A kill during a save leaves the previous backup to resume from.
            double_checkpoint=True,
        )
        if scratch_dir is None
        else RestoreOnlyBackup(backup_dir, delete_checkpoint=False)
    )
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(),  # first: a NaN batch must not reach the backup below
        backup,
        stop_at_step,  # after the restore, so it sees the resumed step
    ]
    if validation_score:  # before the callbacks that monitor it
        callbacks.append(ValidationScore(*validation_score))
    if scratch_dir is None:
        callbacks += [
            keras.callbacks.ModelCheckpoint(
                join_path(run_dir, "checkpoints/best.weights.h5"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
            ),
            keras.callbacks.TensorBoard(join_path(run_dir, "logs")),
        ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=config.early_stopping_patience
            )
        )
    if config.average_last > 1:
        checkpoints_dir = join_path(scratch_dir or run_dir, "checkpoints")
        callbacks.append(AverageLastCheckpoints(checkpoints_dir, config.average_last))
    return callbacks


def resumed_batches(run_dir: str, config: TrainConfig) -> int:
    """Batches a run has already trained on, by its last backup (0 for a new run): a
    resumed run reshuffles its data with it, so it goes on with data it has not seen."""
    metadata_path = join_path(run_dir, "backup/training_metadata.json")
    if not tf.io.gfile.exists(metadata_path):
        return 0
    with tf.io.gfile.GFile(metadata_path) as metadata_file:
        metadata = json.load(metadata_file)
    batches_per_epoch = config.eval_every * config.gradient_accumulation_steps
    return metadata["epoch"] * batches_per_epoch + metadata["batch"] + 1


def fit_model(
    model: keras.Model,
    training_batches,
    validation_batches,
    config: TrainConfig,
    run_dir: str,
    validation_score: tuple[str, Callable[[], float]] | None = None,
    scratch_dir: str | None = None,
) -> tuple[keras.callbacks.History, StopAtStep]:
    """`model.fit` for `config.steps` optimizer updates (each of
    `gradient_accumulation_steps` batches) with a validation every `eval_every`
    updates, resuming from the run's backup; see `training_callbacks`."""
    stop_at_step = StopAtStep(config.steps)
    history = model.fit(
        training_batches,
        epochs=math.ceil(config.steps / config.eval_every),
        steps_per_epoch=config.eval_every * config.gradient_accumulation_steps,
        validation_data=validation_batches,
        callbacks=training_callbacks(run_dir, config, stop_at_step, validation_score, scratch_dir),
        shuffle=False,  # the pipeline shuffles
        verbose=progress_verbosity(),
    )
    return history, stop_at_step
