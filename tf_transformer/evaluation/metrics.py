"""sacreBLEU and chrF of translations; perplexity of a model on batches in its format."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sacrebleu
import tensorflow as tf

from tf_transformer.constants import PAD
from tf_transformer.training.losses import negative_log_likelihoods


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """sacreBLEU (13a tokenization, cased: sacrebleu's defaults) and chrF, with signatures."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} translations but {len(references)} references: "
            "the files must have one line per sentence"
        )
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    return {
        "bleu": round(bleu.corpus_score(hypotheses, [references]).score, 2),
        "chrf": round(chrf.corpus_score(hypotheses, [references]).score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def summed_log_likelihood(model, batches: tf.data.Dataset) -> tuple[float, int]:
    """Negative log-likelihood summed over the real (non-PAD) target tokens of `batches`
    ((features, targets) in the model's format), and how many they are."""
    total_loss, total_tokens = 0.0, 0
    for features, targets in batches:
        token_losses = negative_log_likelihoods(targets, model(features, training=False))
        real = np.asarray(targets) != PAD
        total_loss += float(np.asarray(token_losses)[real].sum())
        total_tokens += int(real.sum())
    return total_loss, total_tokens


def perplexity(model, batches: tf.data.Dataset) -> float:
    """exp(mean negative log-likelihood per real target token) over `batches` in the
    model's format (pipeline.make_dataset, packing.make_packed_dataset)."""
    total_loss, total_tokens = summed_log_likelihood(model, batches)
    if not total_tokens:
        raise ValueError("perplexity needs at least one non-empty target sentence")
    return math.exp(total_loss / total_tokens)
