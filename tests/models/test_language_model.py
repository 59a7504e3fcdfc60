"""The decoder-only language model: causality, left-padded prompts, the cached
generation interface against the full forward pass, config round trip, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import LanguageModelConfig
from tf_transformer.constants import BOS, PAD
from tf_transformer.models import TransformerLanguageModel

VOCAB_SIZE = 40
# Left-padded prompts of lengths 5, 2 and 1 (BOS only).
PROMPTS = np.array(
    [
        [BOS, 7, 8, 9, 10],
        [PAD, PAD, PAD, BOS, 11],
        [PAD, PAD, PAD, PAD, BOS],
    ],
    "int32",
)


def tiny_language_model(**overrides):
    keras.utils.set_random_seed(3)
    config = LanguageModelConfig.preset(
        "tiny",
        vocab_size=VOCAB_SIZE,
        d_model=32,
        ffn_dim=64,
        dropout=0.0,
        max_length=24,
        **overrides,
    )
    model = TransformerLanguageModel(config)
    model.build()
    return model


@pytest.fixture(scope="module", params=["sinusoidal", "learned"])
def model(request):
    return tiny_language_model(position_encoding=request.param)


def test_logits_are_causal(model):
    tokens = np.array([[BOS, 5, 6, 7, 8]], "int32")
    changed = tokens.copy()
    changed[:, 3:] = 20
    np.testing.assert_allclose(
        np.asarray(model(tokens))[:, :3], np.asarray(model(changed))[:, :3], atol=1e-5
    )


def test_left_padding_changes_nothing_of_a_prompt(model):
    """A prompt's logits are the same alone and left-padded in a batch."""
    alone = np.asarray(model(np.array([[BOS, 11]], "int32")))
    padded = np.asarray(model({"token_ids": PROMPTS, "padding_mask": PROMPTS != PAD}))[1, -2:]
    np.testing.assert_allclose(padded, alone[0], atol=1e-5)


def test_cached_generation_equals_the_full_forward_pass(model):
    """Prefill of prompts of three lengths, then eight cached steps, against one full
    forward pass over each prompt and its continuation: logits within 1e-4."""
    steps = 8
    rng = np.random.default_rng(0)
    continuation = rng.integers(4, VOCAB_SIZE, size=(len(PROMPTS), steps)).astype("int32")
    start = model.start_generation(PROMPTS, steps)
    assert int(start.start_index) == PROMPTS.shape[1] - 1
    np.testing.assert_array_equal(start.first_tokens, PROMPTS[:, -1])
    tokens, cache, cached = start.first_tokens, start.cache, []
    for step in range(steps):
        logits, cache = start.next_logits(tokens, cache, start.start_index + step)
        cached.append(np.asarray(logits))
        tokens = continuation[:, step]
    full = np.asarray(model.continuation_logits(PROMPTS, continuation))  # [B, T, V]
    np.testing.assert_allclose(np.stack(cached, axis=1), full, atol=1e-4)
    # ... and the same as each prompt alone, unpadded.
    alone = np.asarray(model(np.concatenate([[BOS, 11], continuation[1, :-1]])[None]))
    np.testing.assert_allclose(full[1], alone[0, 1:], atol=1e-4)


def test_config_round_trips_through_model_keras(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.config == model.config
    np.testing.assert_allclose(np.asarray(loaded(PROMPTS)), np.asarray(model(PROMPTS)), atol=1e-6)


def test_a_dict_config_names_a_bad_key():
    with pytest.raises(ValueError, match="Unknown config key model.num_encoder_layers"):
        TransformerLanguageModel({"num_encoder_layers": 2})


def test_too_long_input_is_an_error():
    with pytest.raises(ValueError, match="token_ids has 30 tokens but model.max_length is 24"):
        tiny_language_model()(np.ones((1, 30), "int32"))


def test_loss_falls_with_model_fit():
    from tf_transformer.config import TrainConfig
    from tf_transformer.training.fit import compile_for_training

    model = tiny_language_model()
    compile_for_training(model, TrainConfig(warmup_steps=5, label_smoothing=0.0, jit_compile=False))
    # A repeating sequence: the next token is easy to learn.
    inputs = np.tile(np.arange(4, 12, dtype="int32"), (8, 2))
    targets = np.roll(inputs, -1, axis=1)
    batches = tf.data.Dataset.from_tensors((inputs, targets)).repeat()
    history = model.fit(batches, steps_per_epoch=10, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
