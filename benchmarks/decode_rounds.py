"""What the decoding side-by-side benchmarks share: their flags, and alternating timed
rounds of several engines over the same sentences."""

from __future__ import annotations

import argparse
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """--model, --src, --ref, --beam-size, --batch-size, --rounds and --limit."""
    parser.add_argument("--model", required=True, help="translation run directory")
    parser.add_argument("--src", required=True, help="source sentences, one per line")
    parser.add_argument("--ref", help="references, for BLEU")
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="first N sentences only")


def timed(translate):
    """`translate(sentences) -> texts` as `(texts, seconds)`."""

    def run(sentences):
        started = time.perf_counter()
        return translate(sentences), time.perf_counter() - started

    return run


def alternating_rounds(engines: dict, sentences: list[str], rounds: int):
    """Each engine (``sentences -> (texts, seconds)``) translates `sentences` once
    untimed, then `rounds` times in turn; returns the first pass's texts and every
    round's seconds, per engine."""
    translations = {name: translate(sentences)[0] for name, translate in engines.items()}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, translate in engines.items():
            seconds[name].append(translate(sentences)[1])
    return translations, seconds


def speed_row(count: int, seconds: list[float]) -> dict:
    """Median sentences/s of the rounds, and every round's figure."""
    return {
        "sentences_per_s": round(statistics.median(count / s for s in seconds), 2),
        "sentences_per_s_rounds": [round(count / s, 2) for s in seconds],
    }
