"""`benchmark decode`: translation speed of a trained run, with or without the cache."""

from __future__ import annotations

import time
from typing import Any

from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.translator import SORTED_BATCHES, Translator, read_lines


def compile_every_shape(translator: Translator, sentences: list[str]) -> int:
    """Translates the first batch of each padded source length that a pass over
    `sentences` searches (windows and sorted batches as `translate_nbest_iter` forms
    them), so that every search shape it needs is compiled; returns how many batches."""
    window_size = translator.decode_config.batch_size * SORTED_BATCHES
    first_batch_of_length = {}
    for start in range(0, len(sentences), window_size):
        window = sentences[start : start + window_size]
        for indices in translator.batches(window):
            batch = [window[index] for index in indices]
            source_ids, _ = translator.source_ids(batch)
            first_batch_of_length.setdefault(source_ids.shape[1], batch)
    for batch in first_batch_of_length.values():
        translator.translate(batch)
    return len(first_batch_of_length)


def benchmark_decode(
    run_dir: str,
    source_path: str,
    decode_config: DecodeConfig,
    use_cache: bool = True,
    jit_compile: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Sentences and target tokens per second over the first `limit` lines of
    `source_path`, timed after one batch of each shape has compiled the search."""
    translator = Translator.from_run(
        run_dir, decode_config, use_cache=use_cache, jit_compile=jit_compile
    )
    sentences = read_lines(source_path)[:limit]
    compile_every_shape(translator, sentences)
    started = time.perf_counter()
    translations = translator.translate(sentences)
    seconds = time.perf_counter() - started
    pieces = translator.target_tokenizer.tokenize(translations).to_list()
    target_tokens = sum(len(ids) + 1 for ids in pieces)  # + EOS
    result = {
        "sentences_per_s": round(len(sentences) / seconds, 2),
        "target_tokens_per_s": round(target_tokens / seconds, 1),
        "beam_size": decode_config.beam_size,
        "cache": use_cache,
        "xla": jit_compile,
        "sentences": len(sentences),
        "mean_target_tokens": round(target_tokens / max(len(sentences), 1), 1),
        "seconds": round(seconds, 2),
    }
    return result
