"""Perplexity of a language model on lines of text, per token and per word."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import tensorflow as tf

from tf_transformer.config import DataConfig
from tf_transformer.data import packing
from tf_transformer.evaluation.metrics import summed_log_likelihood


def language_model_scores(
    model, tokenizer, lines: tf.data.Dataset, data_config: DataConfig, name: str = "text"
) -> dict[str, Any]:
    """Perplexity of `model` on `lines` packed as in training (every token counts: the
    last sequence is padded, not dropped): per token, exp(NLL / tokens), and per word,
    exp(NLL / words) with a line's words split at whitespace plus one for its EOS (so
    it compares across vocabularies)."""
    packed = packing.pack_lines(lines, tokenizer, data_config.max_length, training=False, name=name)
    evaluation_config = dataclasses.replace(data_config, cache="none")
    batches = packing.make_packed_dataset(packed.dataset, evaluation_config, training=False)
    total_loss, total_tokens = summed_log_likelihood(model, batches)
    words = int(
        lines.map(lambda line: tf.size(tf.strings.split(line)))
        .filter(lambda count: count > 0)
        .reduce(0, lambda total, count: total + count + 1)
    )
    return {
        "perplexity": round(math.exp(total_loss / total_tokens), 3),
        "word_perplexity": round(math.exp(total_loss / words), 3),
        "tokens": total_tokens,
        "words": words,
        "lines": packed.report.lines,
        "dropped_empty_lines": packed.report.dropped_empty,
    }
