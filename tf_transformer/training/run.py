"""The run directory every task trains in: seed, strategy and precision, the chief's
vocabulary, the resolved config, the distributed datasets, and the final metrics.

Run directory layout (local or any tf.io.gfile URL such as gs://; what config.yaml
refers to inside the run is relative to it, so a run can be moved or copied):
    config.yaml          the fully resolved config (its `task` says what was trained)
    sentencepiece.model  the vocabulary (trained here, or copied from the one the
                         config points at)
    backup/              BackupAndRestore state: rerun the same command to resume
    checkpoints/         best.weights.h5 by the task's validation score (+ per-validation
                         weights when train.average_last > 1)
    logs/                TensorBoard
    model.keras          the final model (float32)
    metrics.json         the task's scores, losses, steps, timings, dropped examples

Under several workers only the chief writes the run directory and the export; the
others restore from the chief's backup and write only to a scratch directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import DataConfig, ExperimentConfig, join_path
from tf_transformer.data import tokenizer
from tf_transformer.models.precision import float32_copy
from tf_transformer.training.callbacks import optimizer_updates
from tf_transformer.training.fit import (
    compile_for_training,
    fit_model,
    freeze_layers,
    resolve_precision,
    resumed_batches,
)
from tf_transformer.training.strategy import select_strategy

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """A training run in progress (`run_directory`)."""

    experiment: ExperimentConfig  # as config.yaml records it (vocabulary relative to the run)
    data: DataConfig  # its data section with the vocabulary resolved against run_dir
    run_dir: str
    strategy: tf.distribute.Strategy
    scratch_dir: str | None  # set on a non-chief worker, which writes only there
    started: float  # time.perf_counter() at the start

    @property
    def chief(self) -> bool:
        return self.scratch_dir is None

    def save_config(self, experiment: ExperimentConfig) -> None:
        """Records the fully resolved `experiment` (chief only) and keeps it."""
        self.experiment = experiment
        if self.chief:
            config_lib.save(experiment, join_path(self.run_dir, config_lib.RUN_CONFIG))

    def distribute(self, make_dataset: Callable[[tf.distribute.InputContext], tf.data.Dataset]):
        """`make_dataset` through `distribute_datasets_from_function`, and the input
        contexts it was called with (one per worker here)."""
        contexts = []

        def dataset_function(context):
            contexts.append(context)
            return make_dataset(context)

        return self.strategy.distribute_datasets_from_function(dataset_function), contexts

    def fit(
        self,
        build_model: Callable[[], keras.Model],
        training_dataset: Callable[[tf.distribute.InputContext, int], tf.data.Dataset],
        validation_dataset: Callable[[tf.distribute.InputContext], tf.data.Dataset],
        validation_score: Callable[[keras.Model], tuple[str, Callable[[], float]]] | None = None,
        on_training_contexts: Callable[[list[tf.distribute.InputContext]], Any] | None = None,
        initialize: Callable[[keras.Model], Any] | None = None,
        loss: keras.losses.Loss | None = None,
        weighted_metrics: list | None = None,
    ) -> tuple[keras.Model, dict[str, Any]]:
        """Builds and compiles `build_model()` in the strategy's scope and fits it
        (`training.fit.fit_model`) on the distributed datasets: `training_dataset(context,
        resumed_batches)` (repeated here) and `validation_dataset(context)`, which reads
        the whole split on every worker (`whole_dataset_context`). `validation_score(model)`
        names the score the best checkpoint follows (else the validation loss).
        `on_training_contexts` gets the training input contexts before training starts.
        `initialize(model)` sets the built model's weights before training (fine-tuning
        from a pretrained run; a resumed run then restores its backup over them); the
        layers train.frozen_layers names stay fixed. `loss` and `weighted_metrics`
        replace the sequence tasks' token loss and metrics (`compile_for_training`).

        Returns the model and its metrics (steps, initial step, history)."""
        resumed = resumed_batches(self.run_dir, self.experiment.train)
        training_batches, contexts = self.distribute(
            lambda context: training_dataset(context, resumed).repeat()
        )
        if on_training_contexts is not None:
            on_training_contexts(contexts)
        validation_batches, _ = self.distribute(
            lambda context: with_known_cardinality(
                validation_dataset(whole_dataset_context(context))
            )
        )
        with self.strategy.scope():
            model = build_model()
            model.build()
            if initialize is not None:
                initialize(model)
            frozen = freeze_layers(model, self.experiment.train.frozen_layers)
            if frozen:
                logger.info("frozen layers: %s", ", ".join(frozen))
            compile_for_training(model, self.experiment.train, loss, weighted_metrics)
        history, stop_at_step = fit_model(
            model,
            training_batches,
            validation_batches,
            self.experiment.train,
            self.run_dir,
            validation_score(model) if validation_score else None,
            self.scratch_dir,
        )
        metrics = {
            "steps": optimizer_updates(model.optimizer),
            "initial_step": stop_at_step.initial_step,
            "history": {
                name: [float(v) for v in values] for name, values in history.history.items()
            },
        }
        return model, metrics

    def save_model(self, model: keras.Model) -> keras.Model:
        """Saves model.keras in float32 (chief only) and returns that float32 model."""
        serving_model = float32_copy(model)
        if self.chief:
            serving_model.save(join_path(self.run_dir, "model.keras"))
        return serving_model

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Adds the wall time and writes metrics.json (chief only); returns `metrics`."""
        metrics = {**metrics, "wall_time_s": round(time.perf_counter() - self.started, 1)}
        if self.chief:
            with tf.io.gfile.GFile(join_path(self.run_dir, "metrics.json"), "w") as file:
                file.write(json.dumps(metrics, indent=2))
        return metrics


def whole_dataset_context(context: tf.distribute.InputContext) -> tf.distribute.InputContext:
    """An input context that reads the whole dataset on every worker, for validation.

    Shards of uneven length would leave one worker waiting in a collective the others
    never join. The loss and metrics are token means, which counting each batch once
    per worker leaves unchanged.
    """
    return tf.distribute.InputContext(
        num_input_pipelines=1,
        input_pipeline_id=0,
        num_replicas_in_sync=context.num_replicas_in_sync,
    )


def with_known_cardinality(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` that tell Keras how many they are (one cheap pass counts them); else
    Keras warns that the input "ran out of data" after every validation."""
    return batches.apply(
        tf.data.experimental.assert_cardinality(int(batches.reduce(0, lambda n, _: n + 1)))
    )


def _wait_for_every_worker(strategy: tf.distribute.Strategy) -> None:
    """A barrier (one collective sum): past it, what the chief wrote before it exists."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def _prepare_vocabulary(
    given: DataConfig, in_run: DataConfig, build_vocabulary: Callable[[DataConfig], list]
) -> None:
    """Puts the vocabulary at `in_run`'s prefix (kept on a resume, else copied from the
    one `given` points at, else trained by `build_vocabulary(in_run)`)."""
    run_paths = list(dict.fromkeys(tokenizer.vocabulary_paths(in_run)))
    given_paths = list(dict.fromkeys(tokenizer.vocabulary_paths(given)))
    if all(map(tf.io.gfile.exists, run_paths)):
        return
    if all(map(tf.io.gfile.exists, given_paths)):
        for given_path, run_path in zip(given_paths, run_paths, strict=True):
            tf.io.gfile.copy(given_path, run_path, overwrite=True)
        return
    for summary in build_vocabulary(in_run):
        logger.info("Trained vocabulary: %s", summary)


@contextlib.contextmanager
def run_directory(
    experiment: ExperimentConfig,
    output_dir: str,
    build_vocabulary: Callable[[DataConfig], list] = tokenizer.build_vocabulary,
) -> Iterator[Run]:
    """Sets the seed, strategy and dtype policy of `experiment`, puts the vocabulary in
    the run (trained by `build_vocabulary(data)` if the config names none) and yields the
    `Run`; a non-chief worker's scratch directory is removed at the end."""
    started = time.perf_counter()
    run_dir = str(output_dir).rstrip("/")
    keras.utils.set_random_seed(experiment.train.seed)
    strategy = select_strategy(experiment.train.strategy)
    keras.config.set_dtype_policy(resolve_precision(experiment.train.precision, strategy))
    # False only on a non-chief worker of a multi-worker strategy.
    chief = strategy.extended.should_checkpoint
    scratch_dir = None if chief else tempfile.mkdtemp(prefix="tf_transformer_worker_")
    # The run records its vocabulary relative to itself, wherever the config pointed.
    recorded = dataclasses.replace(
        experiment,
        data=dataclasses.replace(
            experiment.data, vocabulary_prefix=config_lib.RUN_VOCABULARY_PREFIX
        ),
    )
    in_run = config_lib.resolve_in_run(recorded, run_dir).data
    try:
        if chief:
            tf.io.gfile.makedirs(run_dir)
            _prepare_vocabulary(experiment.data, in_run, build_vocabulary)
        _wait_for_every_worker(strategy)
        yield Run(recorded, in_run, run_dir, strategy, scratch_dir, started)
    finally:
        if scratch_dir is not None:
            shutil.rmtree(scratch_dir, ignore_errors=True)
