"""Text classifiers side by side: our TransformerClassifier against keras-hub's
BertTextClassifier on a BertBackbone built from a config (no preset download), at the
same shape, on the same SST-2 batches, for the same number of steps, in one process.

    python benchmarks/classifier_vs_keras_hub.py --data-dir ../shared/data/sst2

Both models have the given number of bidirectional blocks of the same width, heads and
feed-forward size, the same dropout (on attention probabilities too), GELU feed-forward
blocks by default (BERT's and configs/sst2.yaml's), and train with the same optimizer
settings (Adam, warmup + inverse-sqrt schedule, clipping) and cross-entropy on the same
bucketed, static-shape batches (`data.classification.make_dataset`) in the same order;
each compiles its step with XLA. What differs is each model's own design: ours is pre-LN
with sinusoidal positions and mean pooling over the real tokens; BERT is post-LN with
learned positions, segment embeddings and a tanh pooler on the first token. Training
runs in --rounds rounds of --round-steps steps, the two models taking turns; an untimed
warm-up round first compiles every batch shape, and each model's tokens/s (real, non-PAD
tokens) is the median over the rounds; the ratio is the median of the rounds' ratios.
Accuracy: on test.tsv.gz (GLUE dev, 872 sentences, so one run's binomial standard error
is about 1.4 points) after training. The whole training is repeated for each of --seeds
seeds (its initial weights, and the order of the batches, the same order for both
models; --first-seed starts them further on, to add seeds to an earlier run); each
model's accuracy is the median over the seeds, with every seed's figure beside it.
Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tf_transformer.config import ClassifierConfig, DataConfig, TrainConfig
from tf_transformer.constants import PAD
from tf_transformer.data import classification, tokenizer
from tf_transformer.models import TransformerClassifier
from tf_transformer.training.fit import build_optimizer, compile_for_training


def model_config(args: argparse.Namespace, vocab_size: int, classes: int) -> ClassifierConfig:
    return ClassifierConfig(
        vocab_size=vocab_size,
        num_classes=classes,
        d_model=args.d_model,
        num_heads=args.heads,
        ffn_dim=args.ffn,
        num_layers=args.layers,
        max_length=args.max_length,
        dropout=args.dropout,
        # keras-hub's encoder blocks drop attention probabilities at the same rate.
        attention_dropout=args.dropout,
        activation=args.activation,
        head_dropout=args.dropout,
    )


def ours(
    config: ClassifierConfig,
    training: TrainConfig,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> keras.Model:
    """Our classifier, compiled with `training`'s optimizer (or `optimizer`)."""
    model = TransformerClassifier(config)
    model.build()
    compile_for_training(
        model,
        training,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
        optimizer,
    )
    return model


def keras_hub_bert(config: ClassifierConfig, training: TrainConfig) -> keras.Model:
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.d_model,
        intermediate_dim=config.ffn_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_length,
    )
    model = keras_hub.models.BertTextClassifier(
        backbone=backbone,
        num_classes=config.num_classes,
        preprocessor=None,
        dropout=config.head_dropout,
    )
    model.compile(
        optimizer=build_optimizer(training),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
        jit_compile=True,
    )
    return model


def bert_features(token_ids):
    return {
        "token_ids": token_ids,
        "padding_mask": tf.not_equal(token_ids, PAD),
        "segment_ids": tf.zeros_like(token_ids),
    }


def logits_of(name: str, model: keras.Model, token_ids) -> np.ndarray:
    token_ids = tf.constant(token_ids)
    if name == "ours":
        return np.asarray(model(token_ids, training=False))
    return np.asarray(model(bert_features(token_ids), training=False))


def fit_round(name: str, model: keras.Model, batches: list) -> float:
    """Seconds `model.fit` takes over `batches` (a list of (ids, labels, weights))."""
    seconds = 0.0
    for ids, labels, weights in batches:
        inputs = ids if name == "ours" else bert_features(tf.constant(ids))
        started = time.perf_counter()
        model.train_on_batch(inputs, labels, sample_weight=weights)
        seconds += time.perf_counter() - started
    return seconds


def start_again(model: keras.Model, fresh: keras.Model) -> None:
    """Resets `model` (already compiled for every batch shape) to the initial weights
    and dropout seed states of `fresh`, the same model newly built, and its optimizer to
    step 0: a seed's run then draws what a fresh model's would, whatever ran before."""
    for variable, value in zip(model.variables, fresh.variables, strict=True):
        variable.assign(value)
    for variable in model.optimizer.variables:
        variable.assign(tf.zeros_like(variable))


def accuracy(name: str, model: keras.Model, batches: list) -> float:
    correct = total = 0.0
    for ids, labels, weights in batches:
        predicted = logits_of(name, model, ids).argmax(axis=1)
        correct += float(((predicted == labels) * weights).sum())
        total += float(weights.sum())
    return round(100.0 * correct / total, 2)


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, shape and optimizer flags this benchmark shares with classifier_variants."""
    parser.add_argument("--data-dir", required=True, help="SST-2 TSV files")
    parser.add_argument("--vocabulary-prefix", help="reuse this SentencePiece model prefix")
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text")
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--activation", default="gelu", help="our feed-forward activation (BERT's: gelu)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=300)


@dataclasses.dataclass
class Sst2Batches:
    """SST-2 tokenized with a vocabulary trained on its training texts, as static-shape
    bucketed batches of (ids, labels, weights): `train` in training order."""

    vocab_size: int
    labels: list[str]
    train: list
    test: list


def sst2_batches(args: argparse.Namespace, steps: int) -> Sst2Batches:
    data = DataConfig(
        source="files",
        data_dir=args.data_dir,
        vocab_size=args.vocab_size,
        vocab_model_type="unigram",
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        min_bucket_length=8,
        bucket_growth=1.5,
    )
    splits = {
        split: classification.read_labelled_tsv(classification.split_path(data, split))
        for split in ("train", "test")
    }
    labels = classification.label_names(splits["train"])
    with tempfile.TemporaryDirectory() as scratch:
        prefix = args.vocabulary_prefix or f"{scratch}/sst2"
        if not tf.io.gfile.exists(f"{prefix}.model"):
            tokenizer.train_vocabulary(splits["train"].texts, f"{prefix}.model", data)
        text_tokenizer = tokenizer.load_tokenizer(f"{prefix}.model")
    tokenized = {
        split: classification.tokenize_examples(
            examples, classification.class_ids(examples, labels), text_tokenizer, args.max_length
        )
        for split, examples in splits.items()
    }
    train = classification.make_dataset(tokenized["train"].dataset, data).repeat().take(steps)
    test = classification.make_dataset(tokenized["test"].dataset, data, training=False)
    return Sst2Batches(
        vocab_size=int(text_tokenizer.vocab_size()),
        labels=labels,
        train=list(train.as_numpy_iterator()),
        test=list(test.as_numpy_iterator()),
    )


def training_config(args: argparse.Namespace, steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        peak_learning_rate=args.learning_rate,
        warmup_steps=args.warmup,
        label_smoothing=0.0,
        jit_compile=True,
    )


def seed_order(seed: int, steps: int):
    """Seed k's order of the training batches (seed 0: as made)."""
    return np.random.default_rng(seed).permutation(steps) if seed else range(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(parser)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds")
    parser.add_argument("--round-steps", type=int, default=150, help="steps per round")
    parser.add_argument("--seeds", type=int, default=3, help="trainings of each model")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds run are first-seed .. first-seed + seeds - 1 (to extend an earlier run)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    steps = args.rounds * args.round_steps
    # The same batches, in the same order, for both models.
    batches = sst2_batches(args, steps)
    train_batches, test_batches = batches.train, batches.test
    # One batch of each shape: the warm-up round compiles them all.
    warm_up = list({batch[0].shape: batch for batch in train_batches}.values())
    training = training_config(args, steps)
    config = model_config(args, batches.vocab_size, len(batches.labels))
    builders = {"ours": ours, "keras_hub": keras_hub_bert}
    models = {name: build(config, training) for name, build in builders.items()}
    for name, model in models.items():
        fit_round(name, model, warm_up)  # compiles every shape
    round_seconds: dict[str, list[float]] = {name: [] for name in models}
    round_tokens = []
    accuracies: dict[str, list[float]] = {name: [] for name in models}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        for name, model in models.items():
            keras.utils.set_random_seed(seed)
            start_again(model, builders[name](config, training))
        seed_batches = [train_batches[index] for index in seed_order(seed, steps)]
        for round_number in range(args.rounds):
            chunk = seed_batches[
                round_number * args.round_steps : (round_number + 1) * args.round_steps
            ]
            round_tokens.append(sum(int((ids != PAD).sum()) for ids, _, _ in chunk))
            for name, model in models.items():
                round_seconds[name].append(fit_round(name, model, chunk))
        for name, model in models.items():
            accuracies[name].append(accuracy(name, model, test_batches))
        # A seed takes minutes: say how each went (on stderr; the JSON is on stdout).
        logging.warning(
            "seed %d: %s (%d of %d seeds)",
            seed,
            ", ".join(f"{name} {accuracies[name][-1]:.2f}" for name in models),
            seed - args.first_seed + 1,
            args.seeds,
        )
    results: dict[str, object] = {
        "seeds": list(seeds),
        "steps": steps,
        "batch_tokens": args.batch_tokens,
        "max_length": args.max_length,
        "vocab_size": config.vocab_size,
        "shape": {
            "d_model": args.d_model,
            "heads": args.heads,
            "ffn": args.ffn,
            "layers": args.layers,
        },
    }
    for name, model in models.items():
        results[name] = {
            "test_accuracy": round(statistics.median(accuracies[name]), 2),
            "test_accuracy_per_seed": accuracies[name],
            "tokens_per_s": round(
                statistics.median(
                    tokens / seconds
                    for tokens, seconds in zip(round_tokens, round_seconds[name], strict=True)
                ),
                1,
            ),
            "params": int(model.count_params()),
        }
    round_ratios = [
        theirs / our
        for our, theirs in zip(round_seconds["ours"], round_seconds["keras_hub"], strict=True)
    ]
    results["round_ratios"] = [round(ratio, 3) for ratio in round_ratios]
    results["tokens_per_s_ratio"] = round(statistics.median(round_ratios), 3)
    results["accuracy_difference"] = round(
        results["ours"]["test_accuracy"] - results["keras_hub"]["test_accuracy"], 2
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
