"""Our classifier in several designs, each trained over seeds on the SST-2 batches of
classifier_vs_keras_hub.py (same vocabulary, shape, optimizer, steps and batch orders):
which of BERT's choices, taken one at a time, changes our accuracy.

    python benchmarks/classifier_variants.py --data-dir ../shared/data/sst2 \\
        --variant base --variant post_ln:normalize_first=false \\
        --variant learned:position_encoding=learned --variant bert_init:kernel_stddev=0.02

A variant is NAME[:KEY=VALUE,...]: KEY is a `ClassifierConfig` field (values read as
YAML, as `--set` reads them), or `kernel_stddev`, which redraws every dense kernel
from a normal truncated at two standard deviations (BERT's initializer; ours is Glorot
uniform), or `embedding_lr_multiplier`, which multiplies the token embeddings' learning
rate (BERT's embeddings start at stddev 0.02 against our 0.088, so the same Adam step
moves them 4.4 times as far relative to their size). Each seed k builds a fresh model
(seed k sets its weights and dropout) and trains it on seed k's batch order, as the
benchmark does; prints one JSON line per variant: test accuracy per seed, their median
and mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time

import classifier_vs_keras_hub as benchmark
import keras
import yaml

from tf_transformer.config import ClassifierConfig, from_dict
from tf_transformer.training.fit import build_optimizer

KERNEL_STDDEV = "kernel_stddev"
EMBEDDING_LR_MULTIPLIER = "embedding_lr_multiplier"
BENCHMARK_ONLY_KEYS = (KERNEL_STDDEV, EMBEDDING_LR_MULTIPLIER)


class EmbeddingScaledAdam(keras.optimizers.Adam):
    """Adam whose learning rate is `multiplier` times larger on the token embeddings."""

    def __init__(self, multiplier: float, **options):
        super().__init__(**options)
        self.multiplier = multiplier

    def build(self, variables):
        super().build(variables)
        self._scales = [
            self.multiplier if "source_embedding" in variable.path else 1.0
            for variable in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        super().update_step(gradient, variable, learning_rate * scale)


def parse_variant(text: str) -> tuple[str, dict]:
    """ "post_ln:normalize_first=false" -> ("post_ln", {"normalize_first": False})."""
    name, _, settings = text.partition(":")
    overrides = {}
    for setting in filter(None, settings.split(",")):
        key, separator, value = setting.partition("=")
        if not separator:
            raise ValueError(f"--variant {text!r}: {setting!r} is not KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def variant_config(base: ClassifierConfig, overrides: dict, where: str) -> ClassifierConfig:
    fields = {key: value for key, value in overrides.items() if key not in BENCHMARK_ONLY_KEYS}
    return from_dict(ClassifierConfig, {**dataclasses.asdict(base), **fields}, where)


def redraw_kernels(model: keras.Model, stddev: float) -> None:
    for variable in model.trainable_weights:
        if variable.path.endswith("kernel"):
            variable.assign(keras.random.truncated_normal(variable.shape, stddev=stddev))


def embedding_scaled_optimizer(training, multiplier: float) -> EmbeddingScaledAdam:
    """`training`'s optimizer (`build_optimizer`) with the embeddings' rate multiplied."""
    options = build_optimizer(training).get_config()
    return EmbeddingScaledAdam.from_config({**options, "multiplier": multiplier})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchmark.add_shared_arguments(parser)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--variant", action="append", required=True, help="NAME[:KEY=VALUE,...], repeatable"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    variants = dict(parse_variant(text) for text in args.variant)

    batches = benchmark.sst2_batches(args, args.steps)
    training = benchmark.training_config(args, args.steps)
    base = benchmark.model_config(args, batches.vocab_size, len(batches.labels))
    for name, overrides in variants.items():
        config = variant_config(base, overrides, f"{name}.")
        started = time.perf_counter()
        accuracies = []
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            optimizer = (
                embedding_scaled_optimizer(training, float(overrides[EMBEDDING_LR_MULTIPLIER]))
                if EMBEDDING_LR_MULTIPLIER in overrides
                else None
            )
            model = benchmark.ours(config, training, optimizer)
            if KERNEL_STDDEV in overrides:
                redraw_kernels(model, float(overrides[KERNEL_STDDEV]))
            order = benchmark.seed_order(seed, args.steps)
            benchmark.fit_round("ours", model, [batches.train[index] for index in order])
            accuracies.append(benchmark.accuracy("ours", model, batches.test))
        result = {
            "variant": name,
            "overrides": overrides,
            "test_accuracy_median": round(statistics.median(accuracies), 2),
            "test_accuracy_mean": round(statistics.mean(accuracies), 2),
            "test_accuracy_per_seed": accuracies,
            "seconds": round(time.perf_counter() - started),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
