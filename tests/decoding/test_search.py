import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import DecodeConfig, ModelConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.decoding.beam_search import beam_search, length_penalty_divisor
from tf_transformer.decoding.sampling import SamplingParameters, batch_seed, sample_loop
from tf_transformer.decoding.search import (
    forbidding_special_tokens,
    search,
    sequence_log_probs,
    strip_after_eos,
)
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.base import forbid_special_tokens

SOURCE = np.array([[5, 6, 7, EOS], [8, 9, EOS, PAD]], "int32")
GREEDY = DecodeConfig()
SAMPLING = DecodeConfig(sample=True, num_return_sequences=4, seed=7)


def small_model():
    config = ModelConfig.preset(
        "tiny", source_vocab_size=30, target_vocab_size=30, d_model=32, ffn_dim=64, dropout=0.0
    )
    return Seq2SeqTransformer(config)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(1234)
    model = small_model()
    model({"encoder_inputs": SOURCE, "decoder_inputs": SOURCE})  # builds it
    return model


def argmax_without_cache(model, source, steps):
    """Reference greedy decoding: the full forward pass over the growing prefix."""
    prefix = np.full((len(source), 1), BOS, "int32")
    for _ in range(steps):
        logits = forbid_special_tokens(model({"encoder_inputs": source, "decoder_inputs": prefix}))
        prefix = np.concatenate([prefix, np.argmax(logits[:, -1], -1)[:, None]], 1)
    return prefix[:, 1:]


def rescore(model, sequences, length_penalty):
    """Length-penalised teacher-forced scores of `sequences` [B, N, L] (EOS restored)."""
    batch_size, count, max_length = sequences.shape
    tokens = sequences.reshape(batch_size * count, max_length)
    lengths = (tokens != PAD).sum(1)
    ended = lengths < max_length
    tokens = np.where(np.arange(max_length) == lengths[:, None], EOS, tokens)
    log_probs = sequence_log_probs(model, np.repeat(SOURCE, count, axis=0), tokens)
    penalised_lengths = np.where(ended, lengths + 1, max_length)
    scores = log_probs / length_penalty_divisor(penalised_lengths, length_penalty)
    return np.asarray(scores).reshape(batch_size, count)


def test_strip_after_eos_pads_the_first_eos_and_the_rest():
    np.testing.assert_array_equal(
        strip_after_eos(np.array([[7, EOS, 8, EOS], [7, 8, 9, 10]])),
        [[7, PAD, PAD, PAD], [7, 8, 9, 10]],
    )


def test_greedy_search_is_the_argmax_at_every_step_scored_by_its_log_prob(model):
    expected = np.asarray(strip_after_eos(argmax_without_cache(model, SOURCE, steps=6)))
    result = search(model, SOURCE, GREEDY, max_length=6)
    np.testing.assert_array_equal(result.sequences[:, 0], expected)
    np.testing.assert_allclose(
        result.scores, rescore(model, np.asarray(result.sequences), 0.0), rtol=1e-5
    )


def test_beam_size_1_without_length_penalty_equals_greedy(model):
    start = model.start_generation(SOURCE, 6)
    result = beam_search(
        forbidding_special_tokens(start.next_logits),
        start.cache,
        2,
        beam_size=1,
        max_length=6,
        length_penalty=0.0,
    )
    greedy = search(model, SOURCE, GREEDY, max_length=6)
    np.testing.assert_array_equal(result.sequences, greedy.sequences)
    np.testing.assert_allclose(result.scores, greedy.scores, rtol=1e-5)


def test_beam_search_scores_equal_teacher_forced_scores(model):
    """The cache follows its beam: every n-best score matches a full forward pass."""
    config = DecodeConfig(beam_size=4, num_return_sequences=4, length_penalty=0.6)
    result = search(model, SOURCE, config, max_length=6)
    assert result.sequences.shape == (2, 4, 6)
    scores = np.asarray(result.scores)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    np.testing.assert_allclose(scores, rescore(model, np.asarray(result.sequences), 0.6), rtol=1e-5)


def test_top_k_1_sampling_equals_greedy(model):
    top_1 = dataclasses.replace(SAMPLING, top_k=1, num_return_sequences=1)
    greedy = search(model, SOURCE, GREEDY, max_length=6)
    sampled = search(model, SOURCE, top_1, max_length=6)
    np.testing.assert_array_equal(sampled.sequences, greedy.sequences)
    np.testing.assert_allclose(sampled.scores, greedy.scores, rtol=1e-5)


def test_no_strategy_generates_pad_or_bos(model):
    for config in (GREEDY, DecodeConfig(beam_size=4, num_return_sequences=4), SAMPLING):
        sequences = np.asarray(search(model, SOURCE, config, max_length=6).sequences)
        generated = sequences[:, :, :-1][sequences[:, :, 1:] != PAD]
        assert not np.isin(generated, (PAD, BOS)).any(), config


def test_samples_repeat_with_their_seed_and_are_sorted_by_log_prob(model):
    first = search(model, SOURCE, SAMPLING, max_length=6)
    again = search(model, SOURCE, SAMPLING, max_length=6)
    other_seed = search(model, SOURCE, dataclasses.replace(SAMPLING, seed=8), max_length=6)
    assert first.sequences.shape == (2, 4, 6)
    np.testing.assert_array_equal(first.sequences, again.sequences)
    assert not np.array_equal(first.sequences, other_seed.sequences)
    scores = np.asarray(first.scores)
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(scores, rescore(model, np.asarray(first.sequences), 0.0), rtol=1e-5)


def test_search_compiles_with_xla(model):
    """Greedy and beam search give their eager results; sampling retraces for a new
    length and repeats its samples call after call."""
    for config in (GREEDY, DecodeConfig(beam_size=3, num_return_sequences=2)):
        compiled = tf.function(
            lambda source, config=config: search(model, source, config, 6), jit_compile=True
        )
        result, eager = compiled(tf.constant(SOURCE)), search(model, SOURCE, config, 6)
        np.testing.assert_array_equal(result.sequences, eager.sequences)
        np.testing.assert_allclose(result.scores, eager.scores, rtol=1e-5)
    sample = tf.function(
        lambda source, max_length: search(model, source, SAMPLING, max_length), jit_compile=True
    )
    first = sample(tf.constant(SOURCE), 6)
    assert sample(tf.constant(SOURCE), 5).sequences.shape == (2, 4, 5)
    np.testing.assert_array_equal(sample(tf.constant(SOURCE), 6).sequences, first.sequences)


class WithoutSelection:
    """`model`, whose searches cannot drop finished sentences from their batch."""

    def __init__(self, model):
        self.model = model

    def start_generation(self, *args):
        return self.model.start_generation(*args)._replace(select_sentences=None)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_dropping_finished_sentences_from_the_batch_changes_no_hypothesis(model, beam_size):
    """Nine sources (the last batch filler) with step limits 1-8: the search that goes
    on with the four unfinished sentences once five have stopped gives the hypotheses
    and scores of the one that runs all nine to the end."""
    sources = np.random.default_rng(0).integers(5, 30, (9, 6)).astype("int32")
    for row, length in enumerate([6, 3, 5, 2, 4, 6, 3, 5, 0]):  # with EOS
        sources[row, max(length - 1, 0) :] = [EOS] * (length > 0) + [PAD] * (6 - length)
    config = DecodeConfig(beam_size=beam_size, num_return_sequences=beam_size)
    limits = tf.constant([1, 2, 3, 4, 5, 6, 7, 8, 8])
    compacted = search(model, sources, config, 8, step_limit=limits)
    whole = search(WithoutSelection(model), sources, config, 8, step_limit=limits)
    np.testing.assert_array_equal(compacted.sequences, whole.sequences)
    np.testing.assert_allclose(compacted.scores, whole.scores, atol=1e-5)
    lengths = (np.asarray(compacted.sequences)[:, 0] != PAD).sum(1)
    assert lengths[8] == 0 and lengths[7] > 4  # filler; a sentence searched on alone


def test_sampling_in_a_graph_draws_the_eager_samples_for_a_seed_input(model):
    @tf.function
    def sample(source, seed):
        sampling = SamplingParameters.from_config(SAMPLING)._replace(seed=seed)
        return search(model, source, SAMPLING, 6, sampling=sampling)

    eager = search(model, SOURCE, SAMPLING, 6)
    np.testing.assert_array_equal(sample(SOURCE, batch_seed(7)).sequences, eager.sequences)
    np.testing.assert_allclose(sample(SOURCE, batch_seed(7)).scores, eager.scores, rtol=1e-6)
    assert not np.array_equal(sample(SOURCE, batch_seed(7, 1)).sequences, eager.sequences)


def test_sample_loop_draws_until_eos_then_pads():
    """A fake model that makes token 5 + index certain up to index 2, then EOS; one row
    already certain of EOS at the first step."""
    vocab_size = 12

    def next_logits(token_ids, cache, index):
        wanted = tf.where(index < 3, 5 + index, EOS)
        wanted = tf.stack([wanted, tf.constant(EOS)])  # [B]
        return tf.one_hot(wanted, vocab_size, on_value=0.0, off_value=-30.0), cache

    sampling = SamplingParameters(1.0, 0, 1.0, batch_seed(3))
    tokens = sample_loop(next_logits, (), batch_size=2, max_length=6, sampling=sampling)
    expected = [[5, 6, 7, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD, PAD]]
    np.testing.assert_array_equal(tokens, expected)
