"""Language models side by side: our TransformerLanguageModel against keras-hub's
GPT2Backbone + GPT2CausalLM (built from a config, no preset download) at the same
shape, on the same packed Multi30k English batches, for the same number of steps, in
one process.

    python benchmarks/lm_vs_keras_hub.py --data-dir ../shared/data/multi30k

Both models are GPT-2 blocks at the given shape (pre-LN, GELU, learned positions, tied
embeddings, LayerNorm epsilon 1e-5, the same dropout) and train with the same optimizer
settings (Adam, warmup + inverse-sqrt schedule, clipping) and plain cross-entropy on the
same batches in the same order; each compiles its step with XLA. Training runs in
--rounds rounds of --round-steps steps, the two models taking turns; the first round
(compilation) is not timed, and each model's training tokens/s is the median over the
other rounds; the throughput ratio is the median of the rounds' ratios. Validation
perplexity: exp(mean NLL per token) over the whole packed validation split, after
training. Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tf_transformer.config import DataConfig, LanguageModelConfig, TrainConfig
from tf_transformer.constants import PAD
from tf_transformer.data import packing, sources, tokenizer
from tf_transformer.models import TransformerLanguageModel
from tf_transformer.training.fit import build_optimizer, compile_for_training


def shapes(args: argparse.Namespace, vocab_size: int) -> LanguageModelConfig:
    return LanguageModelConfig(
        vocab_size=vocab_size,
        d_model=args.d_model,
        num_heads=args.heads,
        ffn_dim=args.ffn,
        num_layers=args.layers,
        max_length=args.seq_len,
        dropout=args.dropout,
        activation="gelu",
        position_encoding="learned",
        layer_norm_epsilon=1e-5,
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.rounds * args.round_steps,
        peak_learning_rate=args.learning_rate,
        warmup_steps=args.warmup,
        label_smoothing=0.0,
        jit_compile=True,
    )


def ours(config: LanguageModelConfig, training: TrainConfig) -> keras.Model:
    model = TransformerLanguageModel(config)
    model.build()
    compile_for_training(model, training)
    return model


def keras_hub_gpt2(config: LanguageModelConfig, training: TrainConfig) -> keras.Model:
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.d_model,
        intermediate_dim=config.ffn_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_length,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    # keras-hub's own loss and weighted metric, with our optimizer settings.
    model.compile(optimizer=build_optimizer(training), jit_compile=True)
    return model


def keras_hub_batch(inputs, targets):
    """Our (inputs, targets) batch in GPT2CausalLM's format: PAD targets weigh zero."""
    features = {"token_ids": inputs, "padding_mask": tf.ones_like(inputs, tf.bool)}
    return features, targets, tf.cast(targets != PAD, tf.float32)


def logits_of(name: str, model: keras.Model, inputs):
    inputs = tf.constant(inputs)
    if name == "ours":
        return model(inputs, training=False)
    return model({"token_ids": inputs, "padding_mask": tf.ones_like(inputs, tf.bool)})


def validation_perplexity(name: str, model: keras.Model, batches: list) -> float:
    total, count = 0.0, 0
    for inputs, targets in batches:
        logits = tf.cast(logits_of(name, model, inputs), tf.float32)
        losses = tf.keras.losses.sparse_categorical_crossentropy(
            targets, logits, from_logits=True
        ).numpy()
        real = targets != PAD
        total += float(losses[real].sum())
        count += int(real.sum())
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Multi30k raw files")
    parser.add_argument("--vocabulary-prefix", help="reuse this SentencePiece model prefix")
    parser.add_argument("--vocab-size", type=int, default=6000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per packed sequence")
    parser.add_argument("--batch", type=int, default=16, help="sequences per batch")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=13, help="rounds (the first untimed)")
    parser.add_argument("--round-steps", type=int, default=25, help="steps per round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    with tempfile.TemporaryDirectory() as scratch:
        data = DataConfig(
            source="multi30k",
            data_dir=args.data_dir,
            vocabulary_prefix=args.vocabulary_prefix or f"{scratch}/multi30k_en",
            vocab_size=args.vocab_size,
            vocab_model_type="unigram",
            max_length=args.seq_len,
            min_bucket_length=min(16, args.seq_len),
            batch_tokens=args.batch * args.seq_len,
        )
        vocabulary = tokenizer.vocabulary_paths(data)[0]
        if not tf.io.gfile.exists(vocabulary):
            tokenizer.build_vocabulary(data, (data.source_language,))
        text_tokenizer = tokenizer.load_tokenizer(vocabulary)
    training = train_config(args)
    steps = training.steps
    train_text = packing.pack_lines(
        sources.load_lines(data, "train"), text_tokenizer, args.seq_len, name="train"
    )
    validation_text = packing.pack_lines(
        sources.load_lines(data, "validation"),
        text_tokenizer,
        args.seq_len,
        training=False,
        name="validation",
    )
    # The same batches, in the same order, for both models.
    train_batches = list(
        packing.make_packed_dataset(train_text.dataset, data)
        .repeat()
        .take(steps)
        .as_numpy_iterator()
    )
    validation_batches = list(
        packing.make_packed_dataset(
            validation_text.dataset, data, training=False
        ).as_numpy_iterator()
    )
    config = shapes(args, int(text_tokenizer.vocab_size()))
    keras.utils.set_random_seed(0)
    models = {"ours": ours(config, training), "keras_hub": keras_hub_gpt2(config, training)}
    tokens_per_round = args.round_steps * args.batch * args.seq_len
    round_seconds: dict[str, list[float]] = {name: [] for name in models}
    for round_number in range(args.rounds):
        chunk = train_batches[
            round_number * args.round_steps : (round_number + 1) * args.round_steps
        ]
        inputs = np.stack([inputs for inputs, _ in chunk])
        targets = np.stack([targets for _, targets in chunk])
        for name, model in models.items():
            batches = tf.data.Dataset.from_tensor_slices((inputs, targets))
            if name == "keras_hub":
                batches = batches.map(keras_hub_batch)
            started = time.perf_counter()
            model.fit(batches, epochs=1, verbose=0)
            round_seconds[name].append(time.perf_counter() - started)
    timed = {name: seconds[1:] for name, seconds in round_seconds.items()}
    results: dict[str, object] = {
        "steps": steps,
        "batch_sequences": args.batch,
        "sequence_length": args.seq_len,
        "vocab_size": config.vocab_size,
        "train_real_token_share": train_text.report.real_token_share,
    }
    for name, model in models.items():
        results[name] = {
            "validation_perplexity": round(
                validation_perplexity(name, model, validation_batches), 3
            ),
            "tokens_per_s": round(tokens_per_round / statistics.median(timed[name]), 1),
            "params": int(model.count_params()),
        }
    round_ratios = [
        theirs / our for our, theirs in zip(timed["ours"], timed["keras_hub"], strict=True)
    ]
    results["round_ratios"] = [round(ratio, 3) for ratio in round_ratios]
    results["tokens_per_s_ratio"] = round(statistics.median(round_ratios), 3)
    results["perplexity_ratio"] = round(
        results["ours"]["validation_perplexity"] / results["keras_hub"]["validation_perplexity"], 3
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
