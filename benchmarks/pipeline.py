"""Input pipeline benchmark: padding efficiency and throughput, printed as one JSON line.

    python benchmarks/pipeline.py --data-dir ../shared/data/multi30k

Builds (or reuses, with --vocabulary-prefix) a joint SentencePiece vocabulary on Multi30k
train, then reports for the training split:
- real_token_share: non-PAD / all tokens of encoder_inputs and targets, for the bucketed
  pipeline (padded per batch, and in static-shape mode), and for plain batches of
  --baseline-batch-size sentences padded to the batch's longest sentence or to max_length;
- batches_per_second (and sentences, tokens): iterating the training dataset with no model,
  once the corpus is cached; tokenize_seconds is the first pass that counts dropped pairs,
  first_epoch_seconds the epoch that tokenizes again and fills the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from tf_transformer.config import DataConfig
from tf_transformer.data import pipeline, sources, tokenizer


def time_epochs(batches: tf.data.Dataset, epochs: int) -> dict[str, float]:
    """Batches, sentences and tokens (with padding) per second, iterating with no model,
    after a first epoch that fills the cache (timed on its own)."""
    start = time.perf_counter()
    for _ in batches:
        pass
    first_epoch_seconds = time.perf_counter() - start
    num_batches = num_sentences = num_tokens = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for features, targets in batches:
            num_batches += 1
            batch_size, target_length = targets.shape
            num_sentences += batch_size
            num_tokens += batch_size * (features["encoder_inputs"].shape[1] + target_length)
    seconds = time.perf_counter() - start
    return {
        "first_epoch_seconds": round(first_epoch_seconds, 2),
        "batches_per_second": round(num_batches / seconds, 1),
        "sentences_per_second": round(num_sentences / seconds),
        "tokens_per_second": round(num_tokens / seconds),
        "batches_per_epoch": num_batches // epochs,
    }


def run(args: argparse.Namespace, vocabulary_prefix: str) -> dict[str, object]:
    config = DataConfig(
        source="multi30k",
        data_dir=args.data_dir,
        source_language=args.source_language,
        target_language=args.target_language,
        vocabulary_prefix=vocabulary_prefix,
        vocab_size=args.vocab_size,
        vocab_model_type=args.model_type,
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        min_bucket_length=args.min_bucket_length,
        bucket_growth=args.bucket_growth,
        static_shapes=False,
    )
    if not tf.io.gfile.exists(tokenizer.vocabulary_paths(config)[0]):
        tokenizer.build_vocabulary(config)
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(config)
    start = time.perf_counter()
    tokenized = pipeline.tokenize_pairs(
        sources.load_pairs(config, "train"), source_tokenizer, target_tokenizer, config.max_length
    )
    tokenize_seconds = time.perf_counter() - start
    bucketed = pipeline.make_dataset(tokenized.dataset, config)
    baseline = args.baseline_batch_size
    static = dataclasses.replace(config, static_shapes=True)
    batchings = {
        "bucketed": bucketed,
        "bucketed_static_shapes": pipeline.make_dataset(tokenized.dataset, static),
        f"padded_{baseline}_to_batch_max": pipeline.padded_batches(
            tokenized.dataset, config, baseline, None
        ),
        f"padded_{baseline}_to_max_length": pipeline.padded_batches(
            tokenized.dataset, config, baseline, config.max_length
        ),
    }
    return {
        "corpus": f"multi30k train {config.source_language}->{config.target_language}",
        "vocab": f"joint {config.vocab_model_type} {config.vocab_size}",
        "batch_tokens": config.batch_tokens,
        "max_length": config.max_length,
        "bucket_lengths": pipeline.bucket_lengths(config),
        "pairs": tokenized.report._asdict(),
        "real_token_share": {
            name: round(pipeline.real_token_share(batches), 4)
            for name, batches in batchings.items()
        },
        "tokenize_seconds": round(tokenize_seconds, 2),
        **time_epochs(bucketed, args.epochs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="directory of Multi30k's raw files")
    parser.add_argument("--source-language", default="en")
    parser.add_argument("--target-language", default="de")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--min-bucket-length", type=int, default=8)
    parser.add_argument("--bucket-growth", type=float, default=1.1)
    parser.add_argument("--baseline-batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed after the first")
    parser.add_argument(
        "--vocabulary-prefix",
        help="reuse (or build there) this SentencePiece model prefix; default: a temporary one",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        result = run(args, args.vocabulary_prefix or str(Path(scratch) / "multi30k"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
