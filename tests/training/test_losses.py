import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.constants import PAD
from tf_transformer.training.losses import (
    MaskedAccuracy,
    MaskedLabelSmoothedCrossEntropy,
    MaskedPerplexity,
)
from tf_transformer.training.schedules import InverseSquareRootSchedule

rng = np.random.default_rng(7)
TARGETS = np.array([[4, 5, 6], [7, PAD, PAD]], "int32")
LOGITS = rng.normal(size=(2, 3, 9)).astype("float32")


def hand_computed_loss(targets, logits, smoothing):
    vocab = logits.shape[-1]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    smoothed = np.full(logits.shape, smoothing / vocab)
    smoothed += (1 - smoothing) * np.eye(vocab)[targets]
    token_losses = -(smoothed * log_probs).sum(-1)
    real = targets != PAD
    return token_losses[real].sum() / real.sum()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_matches_hand_computation_and_ignores_padding(smoothing):
    loss = MaskedLabelSmoothedCrossEntropy(label_smoothing=smoothing)
    expected = hand_computed_loss(TARGETS, LOGITS, smoothing)
    assert float(loss(TARGETS, LOGITS)) == pytest.approx(expected, rel=1e-5)
    changed = LOGITS.copy()
    changed[1, 1:] = 50.0  # logits at PAD targets do not matter
    assert float(loss(TARGETS, changed)) == pytest.approx(expected, rel=1e-5)


def test_loss_gradient_is_softmax_minus_smoothed_targets_at_real_tokens():
    smoothing, vocab = 0.1, LOGITS.shape[-1]
    logits = tf.constant(LOGITS)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = MaskedLabelSmoothedCrossEntropy(label_smoothing=smoothing)(TARGETS, logits)
    probabilities = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
    smoothed = (1 - smoothing) * np.eye(vocab)[TARGETS] + smoothing / vocab
    real = (TARGETS != PAD)[..., None]
    expected = (probabilities - smoothed) * real / real.sum()
    np.testing.assert_allclose(tape.gradient(loss, logits), expected, rtol=1e-5, atol=1e-7)


def test_loss_averages_over_global_tokens_across_replicas(two_cpu_strategy):
    loss = MaskedLabelSmoothedCrossEntropy(label_smoothing=0.1)

    # Replica 0 gets 3 real tokens, replica 1 gets 1: a per-replica mean would
    # weight the single token as much as the three.
    def replica_batch(context):
        row = context.replica_id_in_sync_group
        return TARGETS[row : row + 1], LOGITS[row : row + 1]

    batches = two_cpu_strategy.experimental_distribute_values_from_function(replica_batch)
    per_replica = two_cpu_strategy.run(lambda batch: loss(*batch), args=(batches,))
    total = float(two_cpu_strategy.reduce("SUM", per_replica, axis=None))
    assert total == pytest.approx(hand_computed_loss(TARGETS, LOGITS, 0.1), rel=1e-5)


def test_masked_accuracy_counts_only_real_tokens():
    metric = MaskedAccuracy()
    predictions = np.zeros((2, 3, 9), "float32")
    predictions[0, 0, 4] = predictions[0, 1, 5] = 1.0  # right, right
    predictions[0, 2, 1] = predictions[1, 0, 1] = 1.0  # wrong, wrong
    metric.update_state(TARGETS, predictions)
    assert float(metric.result()) == pytest.approx(0.5)


def test_masked_perplexity_matches_keras_hub_over_batches():
    ours = MaskedPerplexity()
    reference = keras_hub.metrics.Perplexity(from_logits=True, mask_token_id=PAD)
    for logits in (LOGITS, 2.0 * LOGITS):
        ours.update_state(TARGETS, logits)
        reference.update_state(TARGETS, logits)
    log_probs = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    doubled = 2 * LOGITS - np.log(np.exp(2 * LOGITS).sum(-1, keepdims=True))
    real = TARGETS != PAD
    picked = [
        np.take_along_axis(lp, TARGETS[..., None], -1)[..., 0][real] for lp in (log_probs, doubled)
    ]
    expected = np.exp(-np.concatenate(picked).mean())
    assert float(ours.result()) == pytest.approx(expected, rel=1e-5)
    assert float(ours.result()) == pytest.approx(float(reference.result()), rel=1e-5)


def test_schedule_warms_up_linearly_then_decays_as_inverse_sqrt():
    schedule = InverseSquareRootSchedule(peak_learning_rate=1e-3, warmup_steps=100)
    rates = [float(schedule(step)) for step in (0, 49, 99, 399)]
    assert rates == pytest.approx([1e-5, 5e-4, 1e-3, 5e-4], rel=1e-5)
    rebuilt = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(rebuilt(399)) == pytest.approx(5e-4, rel=1e-5)
