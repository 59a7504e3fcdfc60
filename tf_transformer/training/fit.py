"""`train`: an ExperimentConfig in, a run directory with a trained model out.

Run directory layout (local or any tf.io.gfile URL such as gs://; what config.yaml
refers to inside the run is relative to it, so a run can be moved or copied):
    config.yaml          the fully resolved config
    sentencepiece.model  the vocabulary (trained here, or copied from the one the
                         config points at)
    backup/              BackupAndRestore state: rerun the same command to resume
    checkpoints/         best.weights.h5 by validation BLEU (+ per-validation weights
                         when train.average_last > 1)
    logs/                TensorBoard
    model.keras          the final model
    metrics.json         BLEU, losses, steps, timings, dropped-pair counts

Under several workers only the chief writes the run directory and the export; the
others restore from the chief's backup and write only to a scratch directory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import DataConfig, ExperimentConfig, TrainConfig, join_path
from tf_transformer.data import pipeline, sources, tokenizer
from tf_transformer.decoding.translator import Translator
from tf_transformer.evaluation.metrics import corpus_scores
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.precision import float32_copy
from tf_transformer.serving.export import export_translator
from tf_transformer.training.callbacks import (
    AverageLastCheckpoints,
    RestoreOnlyBackup,
    StopAtStep,
    StopOnNonFiniteLoss,
    ValidationScore,
    optimizer_updates,
)
from tf_transformer.training.losses import (
    MaskedAccuracy,
    MaskedLabelSmoothedCrossEntropy,
    MaskedPerplexity,
)
from tf_transformer.training.schedules import InverseSquareRootSchedule
from tf_transformer.training.strategy import select_strategy

logger = logging.getLogger(__name__)


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


def compile_for_training(model: keras.Model, config: TrainConfig) -> None:
    model.compile(
        optimizer=build_optimizer(config),
        loss=MaskedLabelSmoothedCrossEntropy(config.label_smoothing),
        metrics=[MaskedAccuracy(), MaskedPerplexity()],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )


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
    )
    return history, stop_at_step


def _wait_for_every_worker(strategy: tf.distribute.Strategy) -> None:
    """A barrier (one collective sum): past it, what the chief wrote before it exists."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def _text_pairs(pairs: tf.data.Dataset, limit: int | None = None) -> tuple[list[str], list[str]]:
    if limit is not None:
        pairs = pairs.take(limit)
    sources_text, targets_text = [], []
    for source, target in pairs.as_numpy_iterator():
        sources_text.append(source.decode("utf-8"))
        targets_text.append(target.decode("utf-8"))
    return sources_text, targets_text


def _prepare_vocabulary(given: DataConfig, in_run: DataConfig) -> None:
    """Puts the vocabulary at `in_run`'s prefix (kept on a resume, else copied from the
    one `given` points at, else trained)."""
    run_paths = list(dict.fromkeys(tokenizer.vocabulary_paths(in_run)))
    given_paths = list(dict.fromkeys(tokenizer.vocabulary_paths(given)))
    if all(map(tf.io.gfile.exists, run_paths)):
        return
    if all(map(tf.io.gfile.exists, given_paths)):
        for given_path, run_path in zip(given_paths, run_paths, strict=True):
            tf.io.gfile.copy(given_path, run_path, overwrite=True)
        return
    for summary in tokenizer.build_vocabulary(in_run):
        print(f"Trained vocabulary: {summary}")


def train(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Trains, validates (greedy BLEU), saves and scores a model on the test split (with
    the experiment's `decode` settings); returns the metrics it writes.

    The final model goes to OUTPUT_DIR/model.keras (float32, whatever the training
    precision) and, if `export_path` is given, is exported there as a versioned
    SavedModel (EXPORT_PATH/N, strings in and out). Paths are local or tf.io.gfile URLs.
    """
    run_dir = str(output_dir).rstrip("/")
    started = time.perf_counter()
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
    try:
        if chief:
            tf.io.gfile.makedirs(run_dir)
            in_run = config_lib.resolve_in_run(recorded, run_dir).data
            _prepare_vocabulary(experiment.data, in_run)
        _wait_for_every_worker(strategy)
        return _train_in_run_dir(recorded, run_dir, export_path, strategy, scratch_dir, started)
    finally:
        if scratch_dir is not None:
            shutil.rmtree(scratch_dir, ignore_errors=True)


def _train_in_run_dir(experiment, run_dir, export_path, strategy, scratch_dir, started):
    chief = scratch_dir is None
    # The vocabulary as the run records it (relative to the run), resolved.
    data = config_lib.resolve_in_run(experiment, run_dir).data
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(data)
    experiment = dataclasses.replace(
        experiment,
        model=dataclasses.replace(
            experiment.model,
            source_vocab_size=int(source_tokenizer.vocab_size()),
            target_vocab_size=int(target_tokenizer.vocab_size()),
        ),
    )
    if chief:
        config_lib.save(experiment, join_path(run_dir, config_lib.RUN_CONFIG))
    train_config = experiment.train

    tokenize = functools.partial(
        pipeline.tokenize_pairs,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        max_length=min(data.max_length, experiment.model.max_length),
    )
    training_pairs = tokenize(sources.load_pairs(data, "train"), name="train")
    validation_pairs = tokenize(sources.load_pairs(data, "validation"), name="validation")
    resumed = resumed_batches(run_dir, train_config)
    input_contexts = []  # the strategy calls the dataset function once per worker, here

    def training_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        input_contexts.append(context)
        return pipeline.make_dataset(
            training_pairs.dataset, data, context, initial_step=resumed, name="train"
        ).repeat()

    def validation_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Every worker reads the whole validation set, the same batches in the same
        # order: shards of uneven length would leave one worker waiting in a collective
        # the others never join. The loss and metrics are token means, which counting
        # each batch once per worker leaves unchanged.
        whole = tf.distribute.InputContext(
            num_input_pipelines=1,
            input_pipeline_id=0,
            num_replicas_in_sync=context.num_replicas_in_sync,
        )
        batches = pipeline.make_dataset(
            validation_pairs.dataset, data, whole, training=False, name="validation"
        )
        # Bucketing hides the number of batches; Keras then warns that the input "ran
        # out of data" after every validation. Counting them once (a cheap pass) tells it.
        return batches.apply(
            tf.data.experimental.assert_cardinality(int(batches.reduce(0, lambda n, _: n + 1)))
        )

    training_batches = strategy.distribute_datasets_from_function(training_dataset)
    buckets = pipeline.bucket_report(
        training_pairs.length_counts, data, input_contexts[0] if input_contexts else None
    )
    validation_batches = strategy.distribute_datasets_from_function(validation_dataset)

    with strategy.scope():
        model = Seq2SeqTransformer(experiment.model)
        model.build()
        compile_for_training(model, train_config)

    validation_sources, validation_references = _text_pairs(
        sources.load_pairs(data, "validation"), train_config.bleu_sentences
    )
    greedy_translator = Translator(model, source_tokenizer, target_tokenizer)

    def validation_bleu() -> float:
        translations = greedy_translator.translate(validation_sources)
        return corpus_scores(translations, validation_references)["bleu"]

    history, stop_at_step = fit_model(
        model,
        training_batches,
        validation_batches,
        train_config,
        run_dir,
        ("bleu", validation_bleu),
        scratch_dir,
    )
    metrics: dict[str, Any] = {
        "steps": optimizer_updates(model.optimizer),
        "initial_step": stop_at_step.initial_step,
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    if not chief:
        return metrics
    serving_model = float32_copy(model)
    serving_model.save(join_path(run_dir, "model.keras"))

    test_sources, test_references = _text_pairs(sources.load_pairs(data, "test"))
    test_translator = Translator(
        serving_model, source_tokenizer, target_tokenizer, experiment.decode
    )
    test_translations = test_translator.translate(test_sources)
    samples = list(zip(test_sources, test_references, test_translations, strict=True))[:5]
    metrics = {
        **corpus_scores(test_translations, test_references),
        **metrics,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "dropped_pairs": {
            "train": training_pairs.report._asdict(),
            "validation": validation_pairs.report._asdict(),
        },
        # Pairs in buckets too small for one static-shape batch: never trained on.
        "unbatched_pairs": {"train": buckets.unbatched},
        "samples": [
            {"source": source, "reference": reference, "translation": translation}
            for source, reference, translation in samples
        ],
    }
    if export_path is not None:
        metrics["saved_model"] = export_translator(
            serving_model,
            source_tokenizer,
            target_tokenizer,
            experiment.decode,
            list(tokenizer.vocabulary_paths(data)),
            str(export_path),
        )
    with tf.io.gfile.GFile(join_path(run_dir, "metrics.json"), "w") as metrics_file:
        metrics_file.write(json.dumps(metrics, indent=2))
    _print_summary(metrics, run_dir)
    return metrics


def _print_summary(metrics: dict[str, Any], run_dir: str) -> None:
    print(
        f"\nTest BLEU {metrics['bleu']:.2f}, chrF {metrics['chrf']:.2f} "
        f"({metrics['bleu_signature']})"
    )
    print(f"{metrics['steps']} steps in {metrics['wall_time_s']:.0f} s. Sample translations:")
    for sample in metrics["samples"]:
        print(f"  source:      {sample['source']}")
        print(f"  translation: {sample['translation']}")
        print(f"  reference:   {sample['reference']}")
    print(
        f"Run directory: {run_dir}"
        + (f"; SavedModel exported to {metrics['saved_model']}" if "saved_model" in metrics else "")
    )
