import math

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.decoding.beam_search import beam_search, top_extensions
from tf_transformer.models.base import GenerationStart

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
    """`next_logits` from a bigram table; counts its calls and the rows of each."""

    def __init__(self, table=TABLE):
        self.table = table
        self.calls = 0
        self.rows = []

    def __call__(self, token_ids, cache, index):
        self.calls += 1
        self.rows.append(int(token_ids.shape[0]))
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


def test_the_first_step_runs_one_row_per_sentence_then_one_per_beam():
    model = CountingBigramModel()
    run(model, batch_size=2, beam_size=3)
    assert model.rows[0] == 2 and set(model.rows[1:]) == {6}


# After BOS: EOS (0.4), 4 (0.35) or 5 (0.25); after 4: EOS (0.1) or 6 (0.9); after 5:
# EOS (0.9) or 6 (0.1); after 6: EOS. With beam 2 and alpha 1, [EOS] (-0.92) and [5 EOS]
# (-1.28) finish first, but the live [4 6] goes on to [4 6 EOS] (-0.87), the best.
LATE_WINNER = bigram_logits(
    {BOS: {EOS: 0.4, 4: 0.35, 5: 0.25}, 4: {EOS: 0.1, 6: 0.9}, 5: {EOS: 0.9, 6: 0.1}, 6: {EOS: 1.0}}
)


def test_beams_finished_stops_once_beam_size_hypotheses_have_finished():
    model = CountingBigramModel(LATE_WINNER)
    result = run(model, beam_size=2, length_penalty=1.0)
    np.testing.assert_array_equal(result.sequences, [[[PAD] * 6]])  # [EOS]: empty
    np.testing.assert_allclose(result.scores, [[math.log(0.4)]], rtol=1e-6)
    assert model.calls == 2


def test_the_exact_stop_rule_searches_on_for_a_better_hypothesis():
    model = CountingBigramModel(LATE_WINNER)
    result = run(model, beam_size=2, length_penalty=1.0, stop_rule="exact")
    np.testing.assert_array_equal(result.sequences, [[[4, 6, PAD, PAD, PAD, PAD]]])
    np.testing.assert_allclose(result.scores, [[math.log(0.315) / (8 / 6)]], rtol=1e-5)
    assert model.calls > 2


def test_each_sentence_stops_at_its_own_step_limit():
    limited = run(batch_size=2, beam_size=2, length_penalty=0.0, step_limit=tf.constant([1, 6]))
    alone = run(beam_size=2, length_penalty=0.0)
    # Sentence 0 may generate one token: no hypothesis finished, the best live beam [4].
    np.testing.assert_array_equal(limited.sequences[0], [[4, PAD, PAD, PAD, PAD, PAD]])
    np.testing.assert_allclose(limited.scores[0], [math.log(0.6)], rtol=1e-6)
    np.testing.assert_array_equal(limited.sequences[1], alone.sequences[0])
    np.testing.assert_allclose(limited.scores[1], alone.scores[0], rtol=1e-6)


def test_finished_rows_give_empty_hypotheses_and_do_not_delay_the_stop():
    model = CountingBigramModel()
    result = run(model, batch_size=2, beam_size=2, finished_rows=tf.constant([False, True]))
    np.testing.assert_array_equal(result.sequences[1], [[PAD] * 6])
    np.testing.assert_array_equal(result.sequences[0], run(beam_size=2).sequences[0])
    assert model.calls == 3  # as for sentence 0 alone


def test_rejects_an_unknown_stop_rule():
    with pytest.raises(ValueError, match="stop_rule must be 'beams_finished' or 'exact'"):
        run(beam_size=2, stop_rule="never")


@pytest.mark.parametrize("vocab_size", [8000, 50])  # by chunks; plain top-k
def test_top_extensions_equal_a_top_k_over_every_extension(vocab_size):
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(3, 4, vocab_size)).astype("float32") * 3
    live = generator.normal(size=(3, 4)).astype("float32")
    values, beams, tokens = top_extensions(tf.constant(logits), tf.constant(live), 8)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True)) + live[:, :, None]
    expected = np.sort(log_probs.reshape(3, -1), axis=1)[:, ::-1][:, :8]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    picked = log_probs[np.arange(3)[:, None], np.asarray(beams), np.asarray(tokens)]
    np.testing.assert_allclose(picked, expected, rtol=1e-5)


class SentenceBiasedBigramModel(CountingBigramModel):
    """A bigram model that never ends, whose cache holds each row's sentence number:
    sentence s prefers token 4 by s / 4 nats, so rows read from the wrong sentence
    give other hypotheses. Its `select_sentences` keeps the rows of some sentences."""

    def __call__(self, token_ids, cache, index):
        logits, cache = super().__call__(token_ids, cache, index)
        return logits + tf.one_hot(4, VOCAB_SIZE) * cache["sentence"][:, None] / 4, cache

    def select_sentences(self, batch_size):
        def select(cache, sentences):
            rows_per_sentence = cache["sentence"].shape[0] // batch_size
            rows = tf.reshape(
                sentences[:, None] * rows_per_sentence + tf.range(rows_per_sentence)[None], [-1]
            )
            return GenerationStart(
                None,
                0,
                {"sentence": tf.gather(cache["sentence"], rows)},
                self,
                None,
                self.select_sentences(int(sentences.shape[0])),
            )

        return select


NEVER_ENDS = bigram_logits({token: {4: 0.5, 5: 0.3, 6: 0.2} for token in (BOS, 4, 5, 6)})


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_finished_sentences_leave_the_batch_without_changing_any_hypothesis(beam_size, compiled):
    """Nine sentences stop at steps 1-9: once five have stopped, the four others go on
    alone (rows 9 * K -> 4 * K), and every sentence's hypotheses are those of the
    search that runs the whole batch to the end."""
    batch_size = 9

    def search(model, **kwargs):
        def run_search():
            return beam_search(
                model,
                {"sentence": tf.range(batch_size, dtype="float32")},
                batch_size=batch_size,
                beam_size=beam_size,
                max_length=9,
                num_return_sequences=beam_size,
                step_limit=tf.range(1, batch_size + 1),
                **kwargs,
            )

        return tf.function(run_search, jit_compile=True)() if compiled else run_search()

    compacting, whole = SentenceBiasedBigramModel(NEVER_ENDS), SentenceBiasedBigramModel(NEVER_ENDS)
    compacted = search(compacting, select_sentences=compacting.select_sentences(batch_size))
    expected = search(whole)
    np.testing.assert_array_equal(compacted.sequences, expected.sequences)
    np.testing.assert_allclose(compacted.scores, expected.scores, rtol=1e-6)
    # Sentence s generated s + 1 tokens, and its bias shows: later ones pick 4 more.
    lengths = (np.asarray(compacted.sequences)[:, 0] != PAD).sum(1)
    np.testing.assert_array_equal(lengths, np.arange(1, batch_size + 1))
    assert len(set(map(tuple, np.asarray(compacted.sequences)[:, 0].tolist()))) > 1
    if not compiled:  # eager: one call per step, with the rows it ran
        assert compacting.rows == [9] + [9 * beam_size] * 4 + [4 * beam_size] * 4
        assert whole.rows == [9] + [9 * beam_size] * 8
