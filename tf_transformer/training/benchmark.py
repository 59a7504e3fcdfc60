"""`benchmark train`: training throughput on fixed-shape random batches, and the
matmul FLOP count and machine peak that put it in perspective."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_transformer.config import ModelConfig, TrainConfig
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.fit import compile_for_training

# Ids drawn for random batches start here, past PAD/UNK/BOS/EOS.
FIRST_ORDINARY_ID = 4


def training_flops(
    config: ModelConfig, batch_size: int, source_length: int, target_length: int
) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward) of the
    architecture `config` on a ``[batch, source_length]`` / ``[batch, target_length]``
    batch: projections, attention scores and weighted sums, feed-forward layers and the
    output projection, 2 FLOPs per multiply-add. Embedding lookups, softmax and layer
    norms are not matmuls and are not counted."""
    d, s, t = config.d_model, source_length, target_length
    attention_projections = 4 * 2 * d * d  # Q, K, V, output, per token
    feed_forward = 2 * 2 * d * config.ffn_dim
    encoder_per_token = attention_projections + 2 * 2 * s * d + feed_forward
    decoder_per_token = (
        attention_projections
        + 2 * 2 * t * d  # causal self-attention, computed in full
        + 2 * 2 * d * d  # cross-attention queries and output
        + 2 * 2 * s * d  # cross-attention scores and weighted sum
        + feed_forward
    )
    cross_key_value_per_source_token = 2 * 2 * d * d
    forward = batch_size * (
        s * config.num_encoder_layers * encoder_per_token
        + s * config.num_decoder_layers * cross_key_value_per_source_token
        + t * config.num_decoder_layers * decoder_per_token
        + t * 2 * d * config.target_vocab_size
    )
    return 3.0 * forward


def random_batch(
    vocab_size: int, batch_size: int, source_length: int, target_length: int, seed: int = 0
):
    """One ``(features, targets)`` batch of random ordinary ids, no padding."""
    generator = np.random.default_rng(seed)

    def ids(length):
        return generator.integers(FIRST_ORDINARY_ID, vocab_size, (batch_size, length), np.int32)

    features = {"encoder_inputs": ids(source_length), "decoder_inputs": ids(target_length)}
    return features, ids(target_length)


def repeated_batches(batch) -> tf.data.Dataset:
    """`batch` forever, with tf.data's autotuning off. With it on, while training holds
    both cores of a 2-core machine, `fit` steps stall on the iterator in whole ticks
    of about a second, and every model looks equally fast (BENCHMARKS.md,
    "Measurements behind the code")."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_tensors(batch).repeat().with_options(options)


def time_fit(model: keras.Model, batches: tf.data.Dataset, steps: int, warmup_steps: int = 3):
    """Seconds per step of `model.fit` over `steps` steps, after `warmup_steps` untimed
    steps that compile the train function (0: already compiled)."""
    if warmup_steps:
        model.fit(batches, steps_per_epoch=warmup_steps, epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - started) / steps


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's measured float32 matmul rate (GFLOP/s): the best of `repeats`
    ``size x size`` products."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def benchmark_train(
    model_config: ModelConfig,
    batch_size: int,
    source_length: int,
    target_length: int,
    steps: int = 20,
    train_config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Training throughput of `Seq2SeqTransformer` on one repeated random batch.
    tokens_per_s counts source + target tokens."""
    model = Seq2SeqTransformer(model_config)
    model.build()
    compile_for_training(model, train_config or TrainConfig())
    batch = random_batch(model_config.target_vocab_size, batch_size, source_length, target_length)
    step_seconds = time_fit(model, repeated_batches(batch), steps)
    flops = training_flops(model_config, batch_size, source_length, target_length)
    result = {
        "tokens_per_s": round(batch_size * (source_length + target_length) / step_seconds, 1),
        "step_s": round(step_seconds, 6),  # tiny test models step in milliseconds
        "params": int(model.count_params()),
        "gflops_per_s": round(flops / step_seconds / 1e9, 2),
    }
    return result
