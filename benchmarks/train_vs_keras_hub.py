"""Training throughput: our Seq2SeqTransformer against the same-shape model a Keras user
assembles from keras-hub's stock layers, side by side in one process.

    python benchmarks/train_vs_keras_hub.py                 # fixed-shape random batches
    python benchmarks/train_vs_keras_hub.py --data-dir ../shared/data/multi30k

The stock model follows keras.io's "English-to-Spanish translation with KerasHub":
TokenAndPositionEmbedding, TransformerEncoder and TransformerDecoder layers, a Dense
output layer, masked sparse cross-entropy, Keras's default compilation. Ours trains as
`tf-transformer train` does (label smoothing, XLA).

Fixed shape: tokens/s (source + target) on one repeated random batch per model; the
two models take turns for --rounds rounds of --steps steps after an uncounted warm-up
round, and each one's median round counts; the ratio is the median of the rounds'
ratios (stock step time over ours).
Multi30k: real tokens/s (non-PAD source + target tokens) over the same training pairs,
ours in bucketed static-shape batches of --batch-tokens tokens, the stock model in
batches of --batch sentences padded to one fixed length (the longest pair, so nothing
is cut), as in the keras.io example. Each pass over the batches is run twice; the
second is timed. Also reports matmul GFLOP/s against this machine's measured float32
matmul peak. Prints one JSON object on the last line.
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

from tf_transformer.cli import add_shape_arguments, shape_config
from tf_transformer.config import DataConfig, ModelConfig, TrainConfig
from tf_transformer.constants import PAD
from tf_transformer.data import pipeline, sources, tokenizer
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.benchmark import (
    matmul_peak_gflops,
    random_batch,
    repeated_batches,
    time_fit,
    training_flops,
)
from tf_transformer.training.fit import compile_for_training


def stock_keras_hub_model(config: ModelConfig, sequence_length: int) -> keras.Model:
    """The keras.io KerasHub translation model at the shape of `config`."""
    encoder_inputs = keras.Input(shape=(None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input(shape=(None,), dtype="int32", name="decoder_inputs")
    encoded = keras_hub.layers.TokenAndPositionEmbedding(
        config.source_vocab_size, sequence_length, config.d_model, mask_zero=True
    )(encoder_inputs)
    for _ in range(config.num_encoder_layers):
        encoded = keras_hub.layers.TransformerEncoder(
            intermediate_dim=config.ffn_dim, num_heads=config.num_heads, dropout=config.dropout
        )(encoded)
    decoded = keras_hub.layers.TokenAndPositionEmbedding(
        config.target_vocab_size, sequence_length, config.d_model, mask_zero=True
    )(decoder_inputs)
    for _ in range(config.num_decoder_layers):
        decoded = keras_hub.layers.TransformerDecoder(
            intermediate_dim=config.ffn_dim, num_heads=config.num_heads, dropout=config.dropout
        )(decoded, encoded)
    logits = keras.layers.Dense(config.target_vocab_size)(decoded)
    model = keras.Model(
        {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}, logits
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, beta_2=0.98),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def our_model(config: ModelConfig) -> keras.Model:
    model = Seq2SeqTransformer(config)
    model.build()
    compile_for_training(model, TrainConfig())
    return model


def fixed_shape(args: argparse.Namespace, config: ModelConfig) -> dict[str, object]:
    batch = random_batch(config.target_vocab_size, args.batch, args.src_len, args.tgt_len)
    batches = repeated_batches(batch)
    tokens = args.batch * (args.src_len + args.tgt_len)
    flops = training_flops(config, args.batch, args.src_len, args.tgt_len)
    results = {}
    models = {
        "ours": lambda: our_model(config),
        "keras_hub": lambda: stock_keras_hub_model(config, max(args.src_len, args.tgt_len)),
    }
    built = {name: build() for name, build in models.items()}
    for model in built.values():
        time_fit(model, batches, steps=1)  # compile and warm up
    # The models take turns, round after round, so that a slow spell of this shared
    # machine slows both; each model's median round counts. The first round is not
    # counted: ours ran 5-10% slower in it than in later rounds, run after run.
    timer = time_train_function if args.train_function else time_fit
    round_seconds = {name: [] for name in built}
    for _ in range(args.rounds + 1):
        for name, model in built.items():
            round_seconds[name].append(timer(model, batches, args.steps, warmup_steps=0))
    round_seconds = {name: seconds[1:] for name, seconds in round_seconds.items()}
    for name, model in built.items():
        step_seconds = statistics.median(round_seconds[name])
        results[name] = {
            "tokens_per_s": round(tokens / step_seconds, 1),
            "step_s": round(step_seconds, 4),
            "params": int(model.count_params()),
            "gflops_per_s": round(flops / step_seconds / 1e9, 2),
        }
    # Each round's ratio compares two neighbouring spells of the machine; their median
    # is steadier than the ratio of the two medians when the machine's speed drifts.
    round_ratios = [
        stock / ours
        for ours, stock in zip(round_seconds["ours"], round_seconds["keras_hub"], strict=True)
    ]
    results["round_ratios"] = [round(ratio, 3) for ratio in round_ratios]
    results["ratio"] = round(statistics.median(round_ratios), 3)
    return results


def time_train_function(
    model: keras.Model, batches: tf.data.Dataset, steps: int, warmup_steps: int = 0
) -> float:
    """Seconds per step of the compiled train function called directly, without
    `fit`'s loop, callbacks and distributed iterator: the model's own step time. Like
    `time_fit`, after `warmup_steps` untimed steps."""
    iterator = iter(batches)
    for _ in range(warmup_steps):
        model.train_function(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    float(logs["loss"])  # wait for the last step
    return (time.perf_counter() - started) / steps


def _timed_passes(model: keras.Model, batches: list) -> float:
    """Seconds of the second of two passes over `batches` (the first compiles)."""

    def as_dataset():
        return tf.data.Dataset.from_generator(
            lambda: iter(batches),
            output_signature=(
                {
                    "encoder_inputs": tf.TensorSpec([None, None], tf.int32),
                    "decoder_inputs": tf.TensorSpec([None, None], tf.int32),
                },
                tf.TensorSpec([None, None], tf.int32),
            ),
        )

    model.fit(as_dataset(), epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(as_dataset(), epochs=1, verbose=0)
    return time.perf_counter() - started


def _counts(batches: list, config: ModelConfig) -> tuple[int, int, float]:
    """Real tokens, all tokens and matmul FLOPs of `batches`."""
    real = total = 0
    flops = 0.0
    for features, targets in batches:
        source, target = features["encoder_inputs"], targets
        real += int(np.sum(source != PAD) + np.sum(target != PAD))
        total += source.size + target.size
        flops += training_flops(config, source.shape[0], source.shape[1], target.shape[1])
    return real, total, flops


def multi30k(args: argparse.Namespace, config: ModelConfig, scratch: str) -> dict[str, object]:
    data = DataConfig(
        source="multi30k",
        data_dir=args.data_dir,
        vocabulary_prefix=args.vocabulary_prefix or f"{scratch}/multi30k",
        vocab_size=config.target_vocab_size,
        vocab_model_type="unigram",
        max_length=100,
        batch_tokens=args.batch_tokens,
        min_bucket_length=8,
        bucket_growth=1.3,
        static_shapes=True,
    )
    if not tf.io.gfile.exists(tokenizer.vocabulary_paths(data)[0]):
        tokenizer.build_vocabulary(data)
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(data)
    config = dataclasses.replace(
        config,
        source_vocab_size=int(source_tokenizer.vocab_size()),
        target_vocab_size=int(target_tokenizer.vocab_size()),
        max_length=data.max_length,
    )
    examples = pipeline.tokenize_pairs(
        sources.load_pairs(data, "train"), source_tokenizer, target_tokenizer, data.max_length
    ).dataset
    longest = max(
        max(len(features["encoder_inputs"]), len(targets))
        for features, targets in examples.as_numpy_iterator()
    )
    # The same sentences for both: the first --sentences pairs of the shuffled corpus.
    subset = examples.shuffle(100_000, seed=0).take(args.sentences).cache()
    ours_batches = list(pipeline.make_dataset(subset, data, training=False).as_numpy_iterator())
    stock_batches = list(
        pipeline.padded_batches(subset, data, args.batch, longest).as_numpy_iterator()
    )
    results = {"sentences": args.sentences, "stock_padded_length": longest}
    models = {
        "ours": (lambda: our_model(config), ours_batches),
        "keras_hub": (lambda: stock_keras_hub_model(config, longest), stock_batches),
    }
    for name, (build, batches) in models.items():
        seconds = _timed_passes(build(), batches)
        real, total, flops = _counts(batches, config)
        results[name] = {
            "real_tokens_per_s": round(real / seconds, 1),
            "real_token_share": round(real / total, 4),
            "batches": len(batches),
            "seconds": round(seconds, 2),
            "gflops_per_s": round(flops / seconds / 1e9, 2),
        }
    results["ratio"] = round(
        results["ours"]["real_tokens_per_s"] / results["keras_hub"]["real_tokens_per_s"], 3
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(parser)  # --batch: sentences per stock batch on Multi30k
    parser.add_argument("--steps", type=int, default=5, help="fixed-shape steps per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=20,
        help="fixed-shape timed rounds after one untimed (20: single 5-round medians "
        "scattered by about 0.04 on this noisy 2-core machine)",
    )
    parser.add_argument(
        "--train-function",
        action="store_true",
        help="fixed shape: time the compiled train step directly instead of model.fit",
    )
    parser.add_argument("--data-dir", help="Multi30k raw files: benchmark real batches")
    parser.add_argument("--vocabulary-prefix", help="reuse this SentencePiece model prefix")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="our batches' budget")
    parser.add_argument("--sentences", type=int, default=2048, help="Multi30k pairs timed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    keras.utils.set_random_seed(0)
    config = shape_config(args)
    if args.data_dir:
        with tempfile.TemporaryDirectory() as scratch:
            results = multi30k(args, config, scratch)
    else:
        results = fixed_shape(args, config)
    results["matmul_peak_gflops"] = round(matmul_peak_gflops(), 1)
    for name in ("ours", "keras_hub"):
        results[name]["share_of_peak"] = round(
            results[name]["gflops_per_s"] / results["matmul_peak_gflops"], 3
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
