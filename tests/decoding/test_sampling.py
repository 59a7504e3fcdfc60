"""Stateless sampling over fake logits: exact outputs, frequencies, seeds, bad parameters."""

import re

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.sampling import (
    SamplingParameters,
    batch_seed,
    sample_next_tokens,
    sampling_parameters,
)

ROWS = 4000
# Probabilities 0.5, 0.3, 0.15, 0.05 over tokens 3, 1, 0, 2 (unsorted on purpose).
PROBABILITIES = np.array([0.15, 0.3, 0.05, 0.5])
LOGITS = np.log(np.tile(PROBABILITIES, (ROWS, 1))).astype("float32")


def draw(temperature=1.0, top_k=0, top_p=1.0, seed=7, step=0, logits=LOGITS):
    parameters = sampling_parameters(temperature, top_k, top_p, batch_seed(seed))
    return np.asarray(sample_next_tokens(tf.constant(logits), parameters, step))


def frequencies(tokens):
    return np.bincount(tokens, minlength=4) / len(tokens)


def test_plain_sampling_draws_tokens_at_their_probabilities():
    np.testing.assert_allclose(frequencies(draw()), PROBABILITIES, atol=0.02)


def test_top_k_keeps_the_k_most_likely_tokens_renormalised():
    np.testing.assert_allclose(frequencies(draw(top_k=2)), [0, 0.375, 0, 0.625], atol=0.02)
    np.testing.assert_array_equal(draw(top_k=1), np.full(ROWS, 3))
    # k over the vocabulary size is no limit.
    np.testing.assert_array_equal(draw(top_k=9), draw(top_k=0))


def test_top_p_keeps_the_smallest_set_reaching_p():
    # 0.5 + 0.3 reach 0.75: tokens 3 and 1.
    np.testing.assert_allclose(frequencies(draw(top_p=0.75)), [0, 0.375, 0, 0.625], atol=0.02)
    np.testing.assert_array_equal(draw(top_p=0.01), np.full(ROWS, 3))
    # top_k and top_p together: the tighter one wins.
    np.testing.assert_array_equal(draw(top_k=3, top_p=0.5), np.full(ROWS, 3))


def test_temperature_sharpens_or_flattens():
    np.testing.assert_array_equal(draw(temperature=1e-4), np.full(ROWS, 3))
    flat = PROBABILITIES**0.5 / (PROBABILITIES**0.5).sum()
    np.testing.assert_allclose(frequencies(draw(temperature=2.0)), flat, atol=0.02)


def test_same_seed_and_step_repeat_other_seeds_steps_and_batches_differ():
    first = draw(seed=7, step=3)
    np.testing.assert_array_equal(draw(seed=7, step=3), first)
    assert np.mean(draw(seed=8, step=3) != first) > 0.3
    assert np.mean(draw(seed=7, step=4) != first) > 0.3
    other_batch = sampling_parameters(1.0, 0, 1.0, batch_seed(7, 1))
    assert np.mean(np.asarray(sample_next_tokens(LOGITS, other_batch, 3)) != first) > 0.3


def test_a_row_draws_the_same_whatever_rows_follow_it():
    np.testing.assert_array_equal(draw(logits=LOGITS[:10]), draw()[:10])


def test_a_compiled_function_draws_the_eager_samples():
    parameters = sampling_parameters(0.8, 3, 0.9, batch_seed(5))
    eager = sample_next_tokens(LOGITS, parameters, 2)
    graph = tf.function(lambda logits: sample_next_tokens(logits, parameters, 2))(LOGITS)
    np.testing.assert_array_equal(graph, eager)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(temperature=0.0), "temperature must be > 0, got 0.0"),
        (dict(temperature=-1.0), "temperature must be > 0, got -1.0"),
        (dict(top_k=-1), "top_k must be >= 0 (0: no limit), got -1"),
        (dict(top_p=0.0), "top_p must be in (0, 1], got 0.0"),
        (dict(top_p=1.5), "top_p must be in (0, 1], got 1.5"),
    ],
)
def test_bad_parameters_are_refused(arguments, message):
    settings = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, **arguments}
    with pytest.raises(ValueError, match=re.escape(message)):
        sampling_parameters(**settings, seed=batch_seed(0))

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.float32),
        ]
    )
    def sample(temperature, top_k, top_p):
        parameters = sampling_parameters(temperature, top_k, top_p, batch_seed(0))
        return sample_next_tokens(LOGITS[:2], parameters, 0)

    tensor_message = re.escape(message.split(", got")[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=tensor_message):
        sample(*(tf.constant(settings[name]) for name in ("temperature", "top_k", "top_p")))


def test_parameters_of_a_decode_config():
    config = DecodeConfig(sample=True, temperature=0.7, top_k=5, top_p=0.8, seed=11)
    parameters = SamplingParameters.from_config(config, batch_number=2)
    assert parameters[:3] == (0.7, 5, 0.8)
    np.testing.assert_array_equal(parameters.seed, [11, 2])
