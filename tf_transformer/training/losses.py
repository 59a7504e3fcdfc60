"""Label-smoothed cross-entropy averaged over the real tokens of the global batch."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_transformer.constants import PAD
from tf_transformer.models.multi_worker import global_real_tokens


def target_logits(targets, logits):
    """The logit of each target token: ``[B, T]`` from ``[B, T]`` ids and ``[B, T, V]``."""
    indices = ops.expand_dims(ops.cast(targets, "int32"), -1)
    return ops.take_along_axis(logits, indices, axis=-1)[..., 0]


def negative_log_likelihoods(targets, logits):
    """Per-token ``-log p(target)`` ``[B, T]`` from ``[B, T]`` ids and ``[B, T, V]`` logits."""
    logits = ops.cast(logits, "float32")
    return ops.logsumexp(logits, axis=-1) - target_logits(targets, logits)


def label_smoothed_token_losses(targets, logits, label_smoothing: float):
    """Per-token loss ``[B, T]`` against targets smoothed uniformly over the vocabulary.

    Equal to cross-entropy with ``(1 - eps) * one_hot + eps / vocab`` targets, computed
    from log-sum-exp without materialising the one-hot tensor. Its gradient,
    ``softmax - smoothed targets``, is one elementwise pass over the logits; the
    automatic one (a scatter for the target logit plus a broadcast for the mean) cost
    more on the ``[tokens, vocab]`` tensor, the largest of a training step.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "int32")
    vocab_size = ops.shape(logits)[-1]

    @tf.custom_gradient
    def token_losses(logits):
        log_normalizer = ops.logsumexp(logits, axis=-1)  # [B, T]
        negative_log_likelihood = log_normalizer - target_logits(targets, logits)
        uniform_cross_entropy = log_normalizer - ops.mean(logits, axis=-1)
        losses = (1.0 - label_smoothing) * negative_log_likelihood + (
            label_smoothing * uniform_cross_entropy
        )

        def gradient(upstream):
            probabilities = ops.exp(logits - ops.expand_dims(log_normalizer, -1))
            smoothed_targets = (1.0 - label_smoothing) * ops.one_hot(
                targets, vocab_size
            ) + label_smoothing / ops.cast(vocab_size, "float32")
            return ops.expand_dims(upstream, -1) * (probabilities - smoothed_targets)

        return losses, gradient

    return token_losses(logits)


@keras.saving.register_keras_serializable(package="tf_transformer")
class MaskedLabelSmoothedCrossEntropy(keras.losses.Loss):
    """Label-smoothed cross-entropy, averaged over the non-PAD target tokens of the
    global batch.

    Keras's mean reductions average per replica and then over replicas, which
    weights a replica holding a short bucket the same as one holding a long one.
    Here each replica returns (its token-loss sum) / (the real-token count summed over
    all replicas) with reduction "sum", so the gradients Keras sums across replicas
    are exactly those of the global per-token mean.

    Args:
        label_smoothing: probability mass spread uniformly over the vocabulary.
    """

    def __init__(self, label_smoothing=0.1, name="masked_label_smoothed_cross_entropy"):
        super().__init__(name=name, reduction="sum")
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        real_tokens = ops.cast(ops.not_equal(y_true, PAD), "float32")
        token_losses = label_smoothed_token_losses(y_true, y_pred, self.label_smoothing)
        return token_losses * real_tokens / ops.maximum(global_real_tokens(y_true), 1.0)

    def get_config(self):
        return {"name": self.name, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="tf_transformer")
class MaskedAccuracy(keras.metrics.Mean):
    """Share of non-PAD target tokens whose arg-max prediction is right."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        # Right when the target's logit is the largest: a max and a gather instead of
        # an arg-max, which XLA on CPU runs several times slower (ties count as right;
        # BENCHMARKS.md, "Measurements behind the code").
        correct = ops.greater_equal(target_logits(y_true, y_pred), ops.max(y_pred, axis=-1))
        return super().update_state(correct, sample_weight=ops.not_equal(y_true, PAD))


@keras.saving.register_keras_serializable(package="tf_transformer")
class MaskedPerplexity(keras.metrics.Mean):
    """exp(mean negative log-likelihood) over non-PAD target tokens, without smoothing.

    `keras_hub.metrics.Perplexity` computes the same number through Keras's sparse
    cross-entropy, a second softmax over the ``[tokens, vocab]`` logits; this one
    spells out the log-sum-exp exactly as the loss does, so XLA computes it once for
    both (BENCHMARKS.md, "Measurements behind the code").
    """

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(
            negative_log_likelihoods(y_true, y_pred), sample_weight=ops.not_equal(y_true, PAD)
        )

    def result(self):
        return ops.exp(super().result())
