import math

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.decoding.beam_search import beam_search

VOCAB_SIZE = 7
IMPOSSIBLE = -1e4  # logit of a token the fake model never produces


def bigram_logits(next_token_probabilities):
    """A ``[V, V]`` table of logits whose row t is the distribution after token t."""
    table = np.full((VOCAB_SIZE, VOCAB_SIZE), IMPOSSIBLE, "float32")
    for previous, probabilities in next_token_probabilities.items():
        for token, probability in probabilities.items():
            table[previous, token] = math.log(probability)
    return tf.constant(table)


# After BOS: 4 (0.6) or 5 (0.4); after 4: EOS (0.7) or 6 (0.3); after 5: 6; after 6: EOS.
# Finished hypotheses: [4 EOS] 0.42, [5 6 EOS] 0.4, [4 6 EOS] 0.18.
TABLE = bigram_logits({BOS: {4: 0.6, 5: 0.4}, 4: {EOS: 0.7, 6: 0.3}, 5: {6: 1.0}, 6: {EOS: 1.0}})


class CountingBigramModel:
    """`next_logits` from a bigram table; counts its calls."""

    def __init__(self, table=TABLE):
        self.table = table
        self.calls = 0

    def __call__(self, token_ids, cache, index):
        self.calls += 1
        return tf.gather(self.table, token_ids), cache


def run(model=None, batch_size=1, max_length=6, **kwargs):
    model = model or CountingBigramModel()
    cache = {"unused": tf.zeros((batch_size, 1))}
    return beam_search(model, cache, batch_size=batch_size, max_length=max_length, **kwargs)


def test_no_length_penalty_picks_the_short_hypothesis():
    result = run(beam_size=2, length_penalty=0.0)
    np.testing.assert_array_equal(result.sequences, [[[4, PAD, PAD, PAD, PAD, PAD]]])
    np.testing.assert_allclose(result.scores, [[math.log(0.42)]], rtol=1e-6)


def test_length_penalty_1_picks_the_long_hypothesis():
    result = run(beam_size=2, length_penalty=1.0)
    np.testing.assert_array_equal(result.sequences, [[[5, 6, PAD, PAD, PAD, PAD]]])
    np.testing.assert_allclose(result.scores, [[math.log(0.4) / (8 / 6)]], rtol=1e-6)


def test_n_best_in_order_with_length_penalised_scores():
    result = run(beam_size=2, length_penalty=1.0, num_return_sequences=2)
    np.testing.assert_array_equal(
        result.sequences, [[[5, 6, PAD, PAD, PAD, PAD], [4, PAD, PAD, PAD, PAD, PAD]]]
    )
    np.testing.assert_allclose(
        result.scores, [[math.log(0.4) / (8 / 6), math.log(0.42) / (7 / 6)]], rtol=1e-6
    )


def test_stops_once_no_live_beam_can_beat_the_finished_ones():
    model = CountingBigramModel()
    run(model, beam_size=2, max_length=20)
    # Both beams have ended after the third step ([5 6 EOS] and [4 6 EOS]).
    assert model.calls == 3


def test_compiled_with_xla_equals_eager():
    model = CountingBigramModel()
    eager = run(model, batch_size=2, beam_size=3, num_return_sequences=3)
    compiled = tf.function(
        lambda: run(model, batch_size=2, beam_size=3, num_return_sequences=3), jit_compile=True
    )()
    np.testing.assert_array_equal(compiled.sequences, eager.sequences)
    np.testing.assert_allclose(compiled.scores, eager.scores, rtol=1e-6)


def test_live_beams_fill_the_places_no_finished_hypothesis_takes():
    result = run(beam_size=2, max_length=2, length_penalty=1.0, num_return_sequences=2)
    # [4 EOS] finished; [5 6] (0.4) is still live at max_length, length 2 in the penalty.
    np.testing.assert_array_equal(result.sequences, [[[4, PAD], [5, 6]]])
    np.testing.assert_allclose(
        result.scores, [[math.log(0.42) / (7 / 6), math.log(0.4) / (7 / 6)]], rtol=1e-6
    )


def test_rejects_more_return_sequences_than_beams():
    with pytest.raises(ValueError, match="num_return_sequences must be in"):
        run(beam_size=2, num_return_sequences=3)
