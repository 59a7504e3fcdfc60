"""Where a beam-search step's time goes, at a translation model's decoding shape.

    python benchmarks/decode_step_profile.py [--batch 32] [--beams 4] [--steps 74]
    PYTHONPATH=OTHER_CHECKOUT python benchmarks/decode_step_profile.py   # older code

A model of configs/multi30k.yaml's shape (d_model 128, 4 heads, ffn 256, 4 + 4 layers,
8,000 pieces) with random weights decodes a random batch of --batch sources of up to
--source-length tokens with --beams beams for exactly --steps steps (EOS is made
impossible, so no sentence stops early), compiled with XLA; the search's time over
--steps is the time per step. Then the step's parts are timed alone at the same shape,
each compiled and called --repeats times: the vocabulary matmul of every beam's row,
log-softmax, top-k over the K * V extensions of each sentence (what the search did
before) and `top_extensions` (what it does now), the gather that reorders one layer's
self-attention cache, one layer's attention over its cache in the two layouts
(positions first, the old one; heads first) and through beam slots (today's: no
reorder). It uses the installed tf_transformer, so with PYTHONPATH set to another
checkout it times that code's search (the parts that checkout lacks are left out).
Prints one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tf_transformer.config import ModelConfig
from tf_transformer.constants import EOS
from tf_transformer.decoding import beam_search as beam_search_module
from tf_transformer.decoding.search import forbidding_special_tokens
from tf_transformer.layers import MultiHeadAttention
from tf_transformer.layers import attention as attention_module
from tf_transformer.models import Seq2SeqTransformer


def seconds(function, *args, repeats: int) -> float:
    """Median seconds of one call of `function` (compiled with XLA) over 5 rounds."""
    compiled = tf.function(function, jit_compile=True)
    tf.nest.map_structure(np.asarray, compiled(*args))
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            result = compiled(*args)
        tf.nest.map_structure(np.asarray, result)
        rounds.append((time.perf_counter() - started) / repeats)
    return statistics.median(rounds)


def search_step_ms(model, sources, beams: int, steps: int) -> float:
    def without_eos(next_logits):
        def wrapped(token_ids, cache, index):
            logits, cache = next_logits(token_ids, cache, index)
            return tf.where(tf.range(tf.shape(logits)[1]) == EOS, -1e9, logits), cache

        return wrapped

    def search(sources):
        start = model.start_generation(sources, steps)
        # Older checkouts reorder every cache tensor and have no reorder_cache.
        reorder = {"reorder_cache": start.reorder_cache} if hasattr(start, "reorder_cache") else {}
        return beam_search_module.beam_search(
            without_eos(forbidding_special_tokens(start.next_logits)),
            start.cache,
            batch_size=sources.shape[0],
            beam_size=beams,
            max_length=steps,
            length_penalty=0.6,
            **reorder,
        ).scores

    return 1000 * seconds(search, sources, repeats=1) / steps


def part_ms(args, config: ModelConfig) -> dict[str, float]:
    rows, vocab, heads = args.batch * args.beams, config.target_vocab_size, config.num_heads
    head_dim, steps = config.d_model // heads, args.steps
    generator = tf.random.Generator.from_seed(0)
    hidden = generator.normal([rows, config.d_model])
    embeddings = generator.normal([vocab, config.d_model])
    logits = generator.normal([rows, vocab])
    live = generator.normal([args.batch, args.beams])
    parents = tf.random.shuffle(tf.range(rows))
    query = generator.normal([rows, 1, heads, head_dim])
    positions_first = generator.normal([rows, 2, steps, heads, head_dim])
    heads_first = generator.normal([rows, 2, heads, steps, head_dim])

    def top_k_over_extensions(logits, live):
        log_probs = tf.reshape(tf.nn.log_softmax(logits), [args.batch, args.beams, vocab])
        candidates = tf.reshape(log_probs + live[:, :, None], [args.batch, -1])
        return tf.math.top_k(candidates, 2 * args.beams)

    def attend(query, cache, keys_equation):
        scores = tf.nn.softmax(tf.einsum(f"bthd,{keys_equation}->bhts", query, cache[:, 0]))
        return tf.einsum(f"bhts,{keys_equation}->bthd", scores, cache[:, 1])

    parts = {
        "vocabulary_matmul": (lambda h, e: tf.matmul(h, e, transpose_b=True), hidden, embeddings),
        "log_softmax": (tf.nn.log_softmax, logits),
        "top_k_over_K_times_V": (top_k_over_extensions, logits, live),
        "cache_reorder_one_layer": (lambda c, p: tf.gather(c, p), heads_first, parents),
        "attention_one_layer_positions_first": (
            lambda q, c: attend(q, c, "bshd"),
            query,
            positions_first,
        ),
        "attention_one_layer_heads_first": (lambda q, c: attend(q, c, "bhsd"), query, heads_first),
    }
    if hasattr(MultiHeadAttention, "_attend_beam_slots"):
        # Attention that reads each beam's history through slot numbers instead of a
        # reordered cache (the query's scaling and output projection included).
        attention = MultiHeadAttention(config.d_model, heads)
        attention.build((rows, 1, config.d_model))
        slots = tf.random.uniform([args.batch, args.beams, steps], 0, args.beams, tf.int32)
        # Older checkouts stack keys and values in one [B, 2, H, L, Dh] cache tensor.
        cache = heads_first
        if hasattr(attention_module, "KeyValue"):
            cache = attention_module.KeyValue(heads_first[:, 0], heads_first[:, 1])
        parts["attention_one_layer_beam_slots"] = (
            lambda q, c, s: attention._attend_beam_slots(q, c, steps - 1, s),
            query,
            cache,
            slots,
        )
    if hasattr(beam_search_module, "top_extensions"):
        parts["top_extensions"] = (
            lambda logits, live: beam_search_module.top_extensions(
                tf.reshape(logits, [args.batch, args.beams, vocab]), live, 2 * args.beams
            ),
            logits,
            live,
        )
    return {
        name: round(1000 * seconds(function, *inputs, repeats=args.repeats), 3)
        for name, (function, *inputs) in parts.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="source sentences")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--steps", type=int, default=74, help="2 * 32 + 10 by default")
    parser.add_argument("--source-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50, help="calls per timed part")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    config = ModelConfig.preset(
        "tiny",
        source_vocab_size=8000,
        target_vocab_size=8000,
        num_encoder_layers=4,
        num_decoder_layers=4,
        max_length=128,
    )
    model = Seq2SeqTransformer(config)
    model.build()
    generator = np.random.default_rng(0)
    sources = np.zeros((args.batch, args.source_length), np.int32)
    for row in sources:
        length = generator.integers(args.source_length // 2, args.source_length)
        row[:length] = generator.integers(5, config.source_vocab_size, length)
        row[length] = EOS
    result = {
        "code": beam_search_module.__file__,
        "batch": args.batch,
        "beams": args.beams,
        "steps": args.steps,
        "source_length": args.source_length,
        "search_ms_per_step": round(
            search_step_ms(model, tf.constant(sources), args.beams, args.steps), 3
        ),
        "parts_ms": part_ms(args, config),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
