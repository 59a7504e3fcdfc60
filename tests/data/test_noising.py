"""Denoising objectives: T5's lengths and counts, exact reconstruction, BART's statistics."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.constants import EOS
from tf_transformer.data import noising

FIRST_SENTINEL = 4
MASK = 40
# Token ids of the text, clear of the sentinels and the mask.
FIRST_TEXT_ID = 100


@pytest.mark.parametrize(
    ("inputs_length", "raw_length", "targets_length"), [(512, 568, 114), (128, 141, 29)]
)
def test_span_corruption_lengths_match_t5(inputs_length, raw_length, targets_length):
    assert noising.span_corruption_lengths(inputs_length, 0.15, 3.0) == (raw_length, targets_length)


def reconstruct(inputs: np.ndarray, targets: np.ndarray) -> list[int]:
    """The original tokens: each sentinel of `inputs` replaced by what follows it in
    `targets` up to the next sentinel (both without their final EOS)."""
    spans, current = {}, None
    for token in targets[:-1]:
        if FIRST_SENTINEL <= token < FIRST_TEXT_ID:
            current = int(token)
            spans[current] = []
        else:
            spans[current].append(int(token))
    original = []
    for token in inputs[:-1]:
        original.extend(spans[int(token)] if FIRST_SENTINEL <= token < FIRST_TEXT_ID else [token])
    return original


def test_span_corruption_reconstructs_the_original_over_1000_seeds():
    raw_length, targets_length = noising.span_corruption_lengths(128)
    tokens = tf.range(FIRST_TEXT_ID, FIRST_TEXT_ID + raw_length)

    def corrupt(index):
        return noising.span_corruption(tokens, noising.example_seed(7, index), FIRST_SENTINEL)

    corrupted = tf.data.Dataset.range(1000).map(corrupt).batch(1000)
    inputs, targets = (array.numpy() for array in next(iter(corrupted)))
    assert inputs.shape == (1000, 128) and targets.shape == (1000, targets_length)
    assert (inputs[:, -1] == EOS).all() and (targets[:, -1] == EOS).all()
    noise_tokens = (targets[:, :-1] >= FIRST_TEXT_ID).sum(axis=1)
    assert (noise_tokens == round(raw_length * 0.15)).all()
    for row_inputs, row_targets in zip(inputs, targets, strict=True):
        assert reconstruct(row_inputs, row_targets) == list(
            range(FIRST_TEXT_ID, FIRST_TEXT_ID + raw_length)
        )
    # The sentinels count up from the first, one per span, in inputs and targets alike.
    sentinels = inputs[0][inputs[0] < FIRST_TEXT_ID][:-1]
    assert list(sentinels) == list(range(FIRST_SENTINEL, FIRST_SENTINEL + len(sentinels)))
    # Different seeds corrupt differently; the same seed repeats.
    assert len({row.tobytes() for row in inputs}) > 990
    again = noising.span_corruption(tokens, noising.example_seed(7, 0), FIRST_SENTINEL)
    np.testing.assert_array_equal(again[0].numpy(), inputs[0])


@pytest.mark.parametrize("length", [2, 3, 10, 57])
def test_noise_mask_counts_noise_tokens_as_t5_does(length):
    mask = noising.random_spans_noise_mask(length, 0.15, 3.0, noising.example_seed(0, length))
    noise, spans = noising.span_corruption_counts(length, 0.15, 3.0)
    mask = mask.numpy()
    assert mask.shape == (length,) and mask.sum() == noise and not mask[0]
    assert (np.diff(mask.astype(int)) == 1).sum() == spans


def test_text_infilling_masks_30_percent_in_poisson_spans_over_10000_examples():
    length = 128
    tokens = tf.range(FIRST_TEXT_ID, FIRST_TEXT_ID + length)

    def infill(index):
        inputs, targets = noising.text_infilling(tokens, noising.example_seed(3, index), MASK)
        masks = tf.reduce_sum(tf.cast(inputs == MASK, tf.int32))
        kept = tf.size(inputs) - masks
        in_order = tf.reduce_all(inputs[inputs != MASK][1:] > inputs[inputs != MASK][:-1])
        return masks, length - kept, in_order, tf.reduce_all(targets == tokens)

    spans, masked, in_order, targets_equal = (
        array.numpy()
        for array in next(iter(tf.data.Dataset.range(10_000).map(infill).batch(10_000)))
    )
    assert in_order.all() and targets_equal.all()
    share = masked.sum() / (10_000 * length)
    mean_span = masked.sum() / spans.sum()
    assert abs(share - 0.30) <= 0.02, share
    assert abs(mean_span - 3.5) <= 0.3, mean_span


def test_text_infilling_keeps_unmasked_tokens_and_inserts_zero_length_spans():
    tokens = tf.range(FIRST_TEXT_ID, FIRST_TEXT_ID + 40)
    zero_length_spans = 0
    for index in range(200):
        inputs, _ = noising.text_infilling(tokens, noising.example_seed(1, index), MASK)
        inputs = inputs.numpy()
        kept = inputs[inputs != MASK]
        assert len(kept) == 40 - 12  # ceil(40 * 0.3) masked
        # A mask followed by the very token after the previous kept one: nothing was cut.
        previous = FIRST_TEXT_ID - 1
        for position, token in enumerate(inputs):
            if token == MASK:
                following = inputs[position + 1] if position + 1 < len(inputs) else None
                if following is not None and following != MASK and following == previous + 1:
                    zero_length_spans += 1
            else:
                previous = token
    assert zero_length_spans > 0


def test_the_same_seed_corrupts_the_same_way_under_mirrored_strategy(two_cpu_strategy):
    from tf_transformer.config import DataConfig, DenoisingConfig

    objective = DenoisingConfig()
    config = DataConfig(max_length=16, min_bucket_length=16, batch_tokens=64)
    raw_length, _ = noising.denoising_lengths(objective, config.max_length)
    windows = tf.data.Dataset.range(10).map(
        lambda row: FIRST_TEXT_ID + tf.cast(row, tf.int32) * raw_length + tf.range(raw_length)
    )

    def make(context=None):
        return noising.make_denoising_dataset(
            windows, config, objective, seed=5, input_context=context, training=False
        )

    alone = [batch[0]["encoder_inputs"] for batch in make().as_numpy_iterator()]
    distributed = two_cpu_strategy.distribute_datasets_from_function(make)
    replicated = [
        np.concatenate(
            [
                t.numpy()
                for t in two_cpu_strategy.experimental_local_results(batch[0]["encoder_inputs"])
            ]
        )
        for batch in distributed
    ]
    expected = np.concatenate(alone)
    got = np.concatenate(replicated)
    assert expected.shape == (12, 16)  # 10 windows, then 2 filler rows (4 rows per batch)
    np.testing.assert_array_equal(got, expected)
    # Each row is its window corrupted with example_seed(5, index).
    inputs, _ = noising.span_corruption(
        windows.skip(3).take(1).get_single_element(),
        noising.example_seed(5, 3),
        noising.FIRST_SENTINEL,
    )
    np.testing.assert_array_equal(expected[3], inputs.numpy())
