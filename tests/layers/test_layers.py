import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.layers import (
    FeedForward,
    KeyValue,
    MultiHeadAttention,
    PositionalEncoding,
    TokenEmbedding,
    TransformerBlock,
    masks,
)
from tf_transformer.layers.dropout import Dropout, in_xla_compilation
from tf_transformer.layers.positional import sinusoid_table

D_MODEL = 16
rng = np.random.default_rng(0)


def random_sequence(batch=2, length=5, width=D_MODEL):
    return rng.normal(size=(batch, length, width)).astype("float32")


def test_token_embedding_scales_by_sqrt_d_model_and_ties_logits():
    embedding = TokenEmbedding(vocab_size=10, d_model=D_MODEL)
    vectors = np.asarray(embedding(np.array([[4, 7]])))
    table = np.asarray(embedding.embedding.embeddings)
    np.testing.assert_allclose(vectors[0], table[[4, 7]] * 4.0, rtol=1e-6)
    logits = np.asarray(embedding.logits(vectors))
    np.testing.assert_allclose(logits, vectors @ table.T, rtol=1e-5, atol=1e-5)


def test_token_embedding_mask_zero_emits_keras_mask():
    embedding = TokenEmbedding(vocab_size=10, d_model=D_MODEL, mask_zero=True)
    np.testing.assert_array_equal(
        embedding.compute_mask(np.array([[4, 7, 0]])), [[True, True, False]]
    )


def test_sinusoid_table_matches_the_paper_formula():
    table = sinusoid_table(max_length=50, d_model=8)
    position, pair = 7, 1  # dims 2 (sin) and 3 (cos) share frequency 10000^(-2/8)
    angle = position / 10000 ** (2 * pair / 8)
    np.testing.assert_allclose(table[position, 2:4], [np.sin(angle), np.cos(angle)], rtol=1e-6)
    np.testing.assert_array_equal(table[0], [0, 1] * 4)


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_positional_encoding_start_index_offsets_positions(kind):
    layer = PositionalEncoding(kind, max_length=12)
    zeros = np.zeros((1, 6, D_MODEL), "float32")
    full = np.asarray(layer(zeros))
    shifted = np.asarray(layer(zeros[:, :2], start_index=3))
    np.testing.assert_allclose(shifted, full[:, 3:5], rtol=1e-6)


def test_attention_ignores_masked_keys():
    attention = MultiHeadAttention(D_MODEL, num_heads=4)
    query, source = random_sequence(length=3), random_sequence(length=4)
    visible = masks.attention_mask_from_padding(3, np.array([[1, 1, 0, 0]] * 2))
    changed_source = source.copy()
    changed_source[:, 2:] = 100.0
    np.testing.assert_allclose(
        attention(query, source, attention_mask=visible),
        attention(query, changed_source, attention_mask=visible),
        atol=1e-5,
    )


def test_cached_self_attention_equals_causal_attention():
    attention = MultiHeadAttention(D_MODEL, num_heads=4)
    sequence = random_sequence(length=5)
    full = np.asarray(attention(sequence, attention_mask=masks.causal_mask(5)))
    cache = KeyValue(*np.zeros((2, 2, 4, 8, D_MODEL // 4), "float32"))
    steps = []
    for index in range(5):
        outputs, cache = attention.cached_self_attention(
            sequence[:, index : index + 1], cache, index
        )
        steps.append(np.asarray(outputs))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_attention_through_beam_slots_equals_attention_over_each_rows_own_history(compiled):
    """Rows 0-2 and 3-5 are the beams of two sentences; each position before the current
    one sits in the row `beam_slots` names. Attending through the slots equals plain
    cached attention over a cache gathered so that every row holds its own history."""
    attention = MultiHeadAttention(D_MODEL, num_heads=4)
    attention.build((None, 1, D_MODEL))
    groups, beams, length, index = 2, 3, 6, 4
    cache = KeyValue(
        *rng.normal(size=(2, groups * beams, 4, length, D_MODEL // 4)).astype("float32")
    )
    beam_slots = rng.integers(0, beams, size=(groups, beams, length)).astype("int32")
    query = random_sequence(batch=groups * beams, length=1)
    with_slots = attention.cached_self_attention
    if compiled:
        with_slots = tf.function(with_slots, jit_compile=True)
    outputs, written = with_slots(query, cache, index, beam_slots=beam_slots)

    rows = np.arange(groups * beams)
    source_rows = (rows // beams * beams)[:, None] + beam_slots.reshape(groups * beams, length)
    # [B, L, H, Dh] -> [B, H, L, Dh]
    gathered = KeyValue(
        *(np.transpose(part[source_rows, :, np.arange(length)], (0, 2, 1, 3)) for part in cache)
    )
    expected, expected_written = attention.cached_self_attention(query, gathered, index)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # The current position is written into each row's own cache, nothing else moves.
    for written_part, expected_part, original in zip(written, expected_written, cache, strict=True):
        np.testing.assert_allclose(np.asarray(written_part)[:, :, :index], original[:, :, :index])
        np.testing.assert_allclose(
            np.asarray(written_part)[:, :, index], np.asarray(expected_part)[:, :, index]
        )
    # Slots matter: reading every position from the row itself gives other outputs.
    own, _ = attention.cached_self_attention(query, cache, index)
    assert np.abs(np.asarray(own) - np.asarray(expected)).max() > 1e-3


def test_self_attention_fused_projection_equals_separate_query_and_key_value():
    attention = MultiHeadAttention(d_model=D_MODEL, num_heads=4)
    inputs = random_sequence()
    fused = np.asarray(attention(inputs, attention_mask=masks.causal_mask(5)))
    separate = np.asarray(
        attention.attend(inputs, attention.project_key_value(inputs), masks.causal_mask(5))
    )
    np.testing.assert_allclose(fused, separate, rtol=1e-5, atol=1e-6)


def test_dropout_under_xla_draws_fresh_scaled_masks_at_the_rate():
    dropout = Dropout(0.25, seed=3)

    @tf.function(jit_compile=True)
    def twice(inputs):
        assert in_xla_compilation()
        return dropout(inputs, training=True), dropout(inputs, training=True)

    first, second = (np.asarray(x) for x in twice(tf.ones((4000,))))
    np.testing.assert_allclose(np.unique(first), [0.0, 1 / 0.75], rtol=1e-6)
    assert np.mean(first == 0) == pytest.approx(0.25, abs=0.03)
    assert np.mean(first != second) > 0.2  # the seed advances between calls
    # Neighbouring elements are dropped independently (2 * 0.25 * 0.75 disagree).
    assert np.mean((first[1:] == 0) != (first[:-1] == 0)) == pytest.approx(0.375, abs=0.03)
    assert not in_xla_compilation()
    np.testing.assert_array_equal(dropout(np.ones(5), training=False), np.ones(5))


def identity_attention(policy):
    """One head of width D_MODEL whose queries, keys, values and output are its inputs."""
    attention = MultiHeadAttention(D_MODEL, num_heads=1, dtype=policy)
    attention.build((None, None, D_MODEL))
    identity = np.eye(D_MODEL, dtype="float32")
    attention.query_projection.kernel.assign(identity)
    attention.key_value_projection.kernel.assign(np.concatenate([identity, identity], axis=1))
    attention.output_projection.kernel.assign(identity)
    return attention


def test_float16_attention_scales_before_q_dot_k_so_large_activations_stay_finite():
    # Q.K of two 16-wide vectors of ~70 is ~16 * 4900 = 78,400, over float16's 65,504;
    # scaled by 1/sqrt(16) it is ~19,600. Position t is 70 + t everywhere, so each query
    # attends (causally) to its own position and gets its own vector back.
    inputs = np.broadcast_to((70.0 + np.arange(5, dtype="float32"))[None, :, None], (2, 5, 16))
    causal = masks.causal_mask(5)
    float32_outputs = np.asarray(identity_attention("float32")(inputs, attention_mask=causal))
    np.testing.assert_allclose(float32_outputs, inputs, rtol=1e-6)
    half = identity_attention("mixed_float16")
    half_outputs = np.asarray(half(inputs, attention_mask=causal), "float32")
    assert np.isfinite(half_outputs).all()
    np.testing.assert_allclose(half_outputs, float32_outputs, rtol=1e-3)
    # The cached decoding path shares the scaling.
    cache = KeyValue(*np.zeros((2, 2, 1, 5, D_MODEL), "float16"))
    steps = []
    for index in range(5):
        outputs, cache = half.cached_self_attention(inputs[:, index : index + 1], cache, index)
        steps.append(np.asarray(outputs, "float32"))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), float32_outputs, rtol=1e-3)


def test_float32_attention_probabilities_are_softmax_of_scaled_q_dot_k():
    attention = MultiHeadAttention(D_MODEL, num_heads=2)  # head width 8: 1/sqrt(8) is inexact
    query, source = random_sequence(length=3), random_sequence(length=4)
    key_value = attention.project_key_value(source)
    queries = np.asarray(attention.query_projection(query)).reshape(2, 3, 2, 8)
    keys = np.asarray(key_value.keys)  # [B, H, S, Dh]
    scores = np.einsum("bthd,bhsd->bhts", queries, keys) / np.sqrt(8.0)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        attention.attention_probabilities(query, key_value), expected, rtol=1e-6, atol=1e-7
    )


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="d_model=10 and num_heads=4"):
        MultiHeadAttention(10, num_heads=4)


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu', got 'tanh'"):
        FeedForward(D_MODEL, 32, activation="tanh")


@pytest.mark.parametrize("normalize_first", [True, False])
def test_decoder_block_is_causal(normalize_first):
    block = TransformerBlock(
        D_MODEL, 4, 32, normalize_first=normalize_first, causal=True, cross_attention=True
    )
    inputs, encoder_outputs = random_sequence(length=4), random_sequence(length=6)
    changed = inputs.copy()
    changed[:, 2:] = -3.0
    np.testing.assert_allclose(
        np.asarray(block(inputs, encoder_outputs))[:, :2],
        np.asarray(block(changed, encoder_outputs))[:, :2],
        atol=1e-5,
    )


def test_encoder_block_honours_keras_mask_in_a_functional_model():
    token_ids = keras.Input((None,), dtype="int32")
    embedded = TokenEmbedding(20, D_MODEL, mask_zero=True)(token_ids)
    encoded = TransformerBlock(D_MODEL, 4, 32)(embedded)
    model = keras.Model(token_ids, encoded)
    short = model(np.array([[5, 6, 7]]))
    padded = model(np.array([[5, 6, 7, 0, 0]]))
    np.testing.assert_allclose(np.asarray(padded)[:, :3], np.asarray(short), atol=1e-5)
    # Without the mask the padding would leak into the real positions.
    unmasked = keras.Model(
        token_ids, TransformerBlock(D_MODEL, 4, 32)(TokenEmbedding(20, D_MODEL)(token_ids))
    )
    leak = np.asarray(unmasked(np.array([[5, 6, 7, 0, 0]])))[:, :3] - np.asarray(
        unmasked(np.array([[5, 6, 7]]))
    )
    assert np.abs(leak).max() > 1e-3


def build_and_call(layer, *inputs):
    return np.asarray(layer(*inputs))


@pytest.mark.parametrize(
    "layer, inputs",
    [
        (TokenEmbedding(12, D_MODEL, tie_output=False, mask_zero=True), (np.array([[1, 2]]),)),
        (PositionalEncoding("learned", 8), (random_sequence(),)),
        (
            MultiHeadAttention(D_MODEL, 2, dropout=0.1),
            (random_sequence(), random_sequence(length=3)),
        ),
        (FeedForward(D_MODEL, 24, activation="gelu"), (random_sequence(),)),
        (TransformerBlock(D_MODEL, 4, 24, normalize_first=False), (random_sequence(),)),
        (
            TransformerBlock(D_MODEL, 4, 24, dropout=0.2, causal=True, cross_attention=True),
            (random_sequence(), random_sequence(length=3)),
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, keras.layers.Layer) else "",
)
def test_layer_config_round_trips_to_identical_outputs(layer, inputs):
    expected = build_and_call(layer, *inputs)
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    build_and_call(rebuilt, *inputs)
    rebuilt.set_weights(layer.get_weights())
    assert rebuilt.get_config() == config
    np.testing.assert_allclose(build_and_call(rebuilt, *inputs), expected, rtol=1e-6)


@pytest.mark.parametrize("normalize_first", [True, False])
@pytest.mark.parametrize("cross_attention", [True, False])
def test_cached_block_prefill_and_steps_equal_the_full_pass(normalize_first, cross_attention):
    """A causal block (with or without cross-attention) run on a left-padded prompt in
    one cached pass, then one position at a time, equals the uncached call."""
    block = TransformerBlock(
        D_MODEL,
        4,
        32,
        normalize_first=normalize_first,
        causal=True,
        cross_attention=cross_attention,
    )
    inputs, source = random_sequence(batch=2, length=6), random_sequence(batch=2, length=5)
    padding = np.array([[False, True, True, True, True, True], [True] * 6])
    encoder_arguments = {}
    if cross_attention:
        encoder_arguments = dict(encoder_outputs=source)
    expected = np.asarray(block(inputs, padding_mask=padding, **encoder_arguments))
    cache = KeyValue(*np.zeros((2, 2, 4, 6, D_MODEL // 4), "float32"))
    cached_arguments = {}
    if cross_attention:
        cached_arguments = dict(encoder_key_value=block.project_encoder_key_value(source))
    prefill, cache = block.cached_call(
        inputs[:, :3], cache, 0, key_padding_mask=padding, **cached_arguments
    )
    outputs = [np.asarray(prefill)]
    for index in range(3, 6):
        step, cache = block.cached_call(
            inputs[:, index : index + 1],
            cache,
            index,
            key_padding_mask=padding,
            **cached_arguments,
        )
        outputs.append(np.asarray(step))
    cached = np.concatenate(outputs, axis=1)
    np.testing.assert_allclose(cached[padding], expected[padding], atol=1e-5)
