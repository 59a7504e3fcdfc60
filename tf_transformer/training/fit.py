"""`train`: an ExperimentConfig in, a run directory with a trained model out.

Run directory layout:
    config.yaml          the fully resolved config
    sentencepiece.model  the vocabulary (built here unless the config points at one)
    backup/              BackupAndRestore state: rerun the same command to resume
    checkpoints/         best.weights.h5 by validation BLEU (+ per-validation weights
                         when train.average_last > 1)
    logs/                TensorBoard
    model.keras          the final model
    metrics.json         BLEU, losses, steps, timings, dropped-pair counts
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import ExperimentConfig, TrainConfig
from tf_transformer.data import pipeline, sources, tokenizer
from tf_transformer.decoding.translator import Translator
from tf_transformer.evaluation.metrics import corpus_scores
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.serving.export import export_translator
from tf_transformer.training.callbacks import (
    AverageLastCheckpoints,
    StopAtStep,
    StopOnNonFiniteLoss,
    ValidationBleu,
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
        learning_rate=InverseSquareRootSchedule(config.peak_learning_rate, config.warmup_steps),
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
    run_dir: Path,
    config: TrainConfig,
    stop_at_step: StopAtStep,
    validation_bleu: Callable[[], float],
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, in the order they must run."""
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(),  # first: a NaN batch must not reach the backup below
        # double_checkpoint: a kill during a save leaves the previous backup to resume from.
        keras.callbacks.BackupAndRestore(
            str(run_dir / "backup"),
            save_freq=config.backup_every,
            delete_checkpoint=False,
            double_checkpoint=True,
        ),
        stop_at_step,  # after the restore, so it sees the resumed step
        ValidationBleu(validation_bleu),  # before the callbacks that monitor val_bleu
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"),
            monitor="val_bleu",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_bleu", mode="max", patience=config.early_stopping_patience
            )
        )
    if config.average_last > 1:
        callbacks.append(AverageLastCheckpoints(run_dir / "checkpoints", config.average_last))
    return callbacks


def _text_pairs(pairs: tf.data.Dataset, limit: int | None = None) -> tuple[list[str], list[str]]:
    if limit is not None:
        pairs = pairs.take(limit)
    sources_text, targets_text = [], []
    for source, target in pairs.as_numpy_iterator():
        sources_text.append(source.decode("utf-8"))
        targets_text.append(target.decode("utf-8"))
    return sources_text, targets_text


def _prepare_vocabulary(experiment: ExperimentConfig, run_dir: Path) -> ExperimentConfig:
    """Points the data config at the run's vocabulary, training it on first use."""
    data = experiment.data
    if not tokenizer.vocabulary_paths(data)[0].exists():
        data = dataclasses.replace(data, vocabulary_prefix=str(run_dir / "sentencepiece"))
        if not tokenizer.vocabulary_paths(data)[0].exists():
            for summary in tokenizer.build_vocabulary(data):
                print(f"Trained vocabulary: {summary}")
    return dataclasses.replace(experiment, data=data)


def train(
    experiment: ExperimentConfig, output_dir: str | Path, export_path: str | Path | None = None
) -> dict[str, Any]:
    """Trains, validates (greedy BLEU), saves and scores a model on the test split (with
    the experiment's `decode` settings); returns the metrics it writes.

    The final model goes to OUTPUT_DIR/model.keras and, if `export_path` is given, is
    exported there as a versioned SavedModel (EXPORT_PATH/N, strings in and out).
    """
    run_dir = Path(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    keras.utils.set_random_seed(experiment.train.seed)
    strategy = select_strategy(experiment.train.strategy)
    keras.config.set_dtype_policy(resolve_precision(experiment.train.precision, strategy))

    experiment = _prepare_vocabulary(experiment, run_dir)
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(experiment.data)
    experiment = dataclasses.replace(
        experiment,
        model=dataclasses.replace(
            experiment.model,
            source_vocab_size=int(source_tokenizer.vocab_size()),
            target_vocab_size=int(target_tokenizer.vocab_size()),
        ),
    )
    config_lib.save(experiment, run_dir / "config.yaml")
    data, train_config = experiment.data, experiment.train

    tokenize = functools.partial(
        pipeline.tokenize_pairs,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        max_length=min(data.max_length, experiment.model.max_length),
    )
    training_pairs = tokenize(sources.load_pairs(data, "train"), name="train")
    validation_pairs = tokenize(sources.load_pairs(data, "validation"), name="validation")
    training_batches = strategy.distribute_datasets_from_function(
        lambda context: pipeline.make_dataset(training_pairs.dataset, data, context).repeat()
    )
    validation_batches = pipeline.make_dataset(validation_pairs.dataset, data, training=False)
    # Bucketing hides the number of batches; Keras then warns that the input "ran out
    # of data" after every validation. Counting them once (a cheap pass) tells it.
    validation_batches = validation_batches.apply(
        tf.data.experimental.assert_cardinality(
            int(validation_batches.reduce(0, lambda count, _: count + 1))
        )
    )

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

    stop_at_step = StopAtStep(train_config.steps)
    callbacks = training_callbacks(run_dir, train_config, stop_at_step, validation_bleu)
    history = model.fit(
        training_batches,
        epochs=math.ceil(train_config.steps / train_config.eval_every),
        steps_per_epoch=train_config.eval_every,
        validation_data=validation_batches,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
    )
    model.save(run_dir / "model.keras")

    test_sources, test_references = _text_pairs(sources.load_pairs(data, "test"))
    test_translator = Translator(model, source_tokenizer, target_tokenizer, experiment.decode)
    test_translations = test_translator.translate(test_sources)
    samples = list(zip(test_sources, test_references, test_translations, strict=True))[:5]
    metrics = {
        **corpus_scores(test_translations, test_references),
        "steps": int(model.optimizer.iterations.numpy()),
        "initial_step": stop_at_step.initial_step,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "dropped_pairs": {
            "train": training_pairs.report._asdict(),
            "validation": validation_pairs.report._asdict(),
        },
        "samples": [
            {"source": source, "reference": reference, "translation": translation}
            for source, reference, translation in samples
        ],
    }
    if export_path is not None:
        metrics["saved_model"] = export_translator(
            model,
            source_tokenizer,
            target_tokenizer,
            experiment.decode,
            tokenizer.vocabulary_paths(data),
            export_path,
        )
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    _print_summary(metrics, run_dir)
    return metrics


def _print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
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
