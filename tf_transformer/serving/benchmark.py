"""`benchmark serve`: load time, latency and throughput of an exported SavedModel."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops the graph uses)

from tf_transformer.data.synthetic import generate_pairs
from tf_transformer.decoding.translator import read_lines


def benchmark_serve(
    model_dir: str,
    source_path: str | None = None,
    single_calls: int = 50,
    batch_size: int = 32,
    batches: int = 5,
) -> dict[str, Any]:
    """Loads the SavedModel at `model_dir` (a version directory) and times its
    `serving_default` signature: `single_calls` one-sentence calls (latency p50 / p95)
    and `batches` calls of `batch_size` sentences (sentences/s), after an untimed pass
    over the same calls (an `export --xla` model compiles each request shape on its
    first call). Sentences come from `source_path` (local or a URL), one per line, or
    from the built-in synthetic corpus."""
    if source_path is not None:
        sentences = read_lines(str(source_path))
    else:
        sentences = [source for source, _ in generate_pairs(single_calls + batch_size * batches)]
    sentences = [sentence for sentence in sentences if sentence.strip()]
    if not sentences:
        raise ValueError(f"No sentences to translate in {source_path}")

    started = time.perf_counter()
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    load_seconds = time.perf_counter() - started

    def sentence_batch(start: int, size: int) -> tf.Tensor:
        return tf.constant([sentences[(start + i) % len(sentences)] for i in range(size)])

    single_inputs = [sentence_batch(call, 1) for call in range(single_calls)]
    batch_inputs = [sentence_batch(batch * batch_size, batch_size) for batch in range(batches)]
    for inputs in single_inputs + batch_inputs:
        serve(inputs=inputs)
    latencies = []
    for inputs in single_inputs:
        started = time.perf_counter()
        serve(inputs=inputs)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    for inputs in batch_inputs:
        serve(inputs=inputs)
    batch_seconds = time.perf_counter() - started

    result = {
        "load_s": round(load_seconds, 2),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "latency_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "batch_sentences_per_s": round(batch_size * batches / batch_seconds, 2),
        "batch_size": batch_size,
        "single_calls": single_calls,
        "batches": batches,
    }
    return result
