import keras
import numpy as np
import pytest

from tf_transformer.config import ModelConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.models import Seq2SeqTransformer

VOCAB = 40
SOURCE = np.array([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]], "int32")
DECODER_INPUTS = np.array([[BOS, 11, 12, 13], [BOS, 14, 15, PAD]], "int32")
REAL_TARGET = DECODER_INPUTS != PAD


def tiny_config(**overrides):
    return ModelConfig.preset(
        "tiny",
        **{
            "source_vocab_size": VOCAB,
            "target_vocab_size": VOCAB,
            "d_model": 32,
            "num_heads": 4,
            "ffn_dim": 64,
            "dropout": 0.1,
            "max_length": 16,
            **overrides,
        },
    )


def logits(model, source=SOURCE, decoder_inputs=DECODER_INPUTS):
    return np.asarray(model({"encoder_inputs": source, "decoder_inputs": decoder_inputs}))


VARIANTS = {
    "pre_ln_shared": {},
    "post_ln": {"normalize_first": False},
    "separate_vocabularies": {
        "share_embeddings": False,
        "tie_output_embeddings": False,
        "target_vocab_size": VOCAB + 7,
        "position_encoding": "learned",
        "activation": "gelu",
    },
}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def model(request):
    return Seq2SeqTransformer(tiny_config(**VARIANTS[request.param]))


def test_logits_shape_and_dtype(model):
    output = logits(model)
    assert output.shape == (2, 4, model.config.target_vocab_size)
    assert output.dtype == np.float32


def test_appending_source_padding_changes_no_real_target_logit(model):
    padded_source = np.pad(SOURCE, ((0, 0), (0, 3)), constant_values=PAD)
    difference = np.abs(logits(model, source=padded_source) - logits(model))
    assert difference[REAL_TARGET].max() < 1e-5


def test_changing_later_target_tokens_changes_no_earlier_logit(model):
    reference = logits(model)
    for position in range(DECODER_INPUTS.shape[1] - 1):
        changed = DECODER_INPUTS.copy()
        changed[:, position + 1 :] = 30 + position
        difference = np.abs(logits(model, decoder_inputs=changed) - reference)
        assert difference[:, : position + 1].max() == pytest.approx(0.0, abs=1e-5)
        assert difference[:, position + 1 :].max() > 1e-4  # the later positions do change


def test_cross_attention_weights_are_distributions_over_real_source_positions(model):
    weights = [np.asarray(w) for w in model.cross_attention_weights(SOURCE, DECODER_INPUTS)]
    assert len(weights) == model.config.num_decoder_layers
    for block_weights in weights:
        assert block_weights.shape == (2, 4, 4, 5)  # [B, H, T, S]
        np.testing.assert_allclose(block_weights.sum(axis=-1), 1.0, atol=1e-5)
        assert block_weights[1, :, :, 3:].max() < 1e-6  # PAD source positions
    changed = DECODER_INPUTS.copy()
    changed[:, 2:] = 30
    changed_weights = model.cross_attention_weights(SOURCE, changed)[-1]
    np.testing.assert_allclose(
        np.asarray(changed_weights)[:, :, :2], weights[-1][:, :, :2], atol=1e-6
    )


def test_cached_decoding_reproduces_the_full_forward_pass(model):
    full = logits(model)
    encoder_outputs = model.encode(SOURCE)
    cache = model.initial_cache(encoder_outputs, SOURCE != PAD, max_length=8)
    steps = []
    for index in range(DECODER_INPUTS.shape[1]):
        step_logits, cache = model.decode_step(DECODER_INPUTS[:, index], cache, index)
        steps.append(np.asarray(step_logits))
    assert np.abs(np.stack(steps, axis=1) - full)[REAL_TARGET].max() < 1e-4


def test_a_sources_keys_and_values_serve_all_its_hypotheses(model):
    """Three decoder rows per source sentence attend to one copy of its keys and
    values: the same logits as each row with its own tiled copy."""
    model.build()
    encoder_outputs = model.encode(SOURCE)
    shared = model.initial_cache(encoder_outputs, SOURCE != PAD, max_length=8)
    tiled = model.initial_cache(
        np.repeat(encoder_outputs, 3, axis=0), np.repeat(SOURCE != PAD, 3, axis=0), max_length=8
    )
    shared = shared._replace(self_attention=tiled.self_attention)  # one per row
    tokens = np.array([BOS, 11, 12, BOS, 14, 15], "int32")  # rows 0-2: sentence 0
    shared_logits, shared_cache = model.decode_step(tokens, shared, 0)
    tiled_logits, tiled_cache = model.decode_step(tokens, tiled, 0)
    assert shared.cross_attention[0].keys.shape[0] == 2
    assert tiled.cross_attention[0].keys.shape[0] == 6
    np.testing.assert_allclose(shared_logits, tiled_logits, atol=1e-5)
    np.testing.assert_allclose(
        shared_cache.self_attention[0], tiled_cache.self_attention[0], atol=1e-6
    )


def test_save_and_load_keras_file_gives_identical_outputs(model, tmp_path):
    expected = logits(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, Seq2SeqTransformer)
    assert loaded.config == model.config
    np.testing.assert_array_equal(logits(loaded), expected)


def test_from_config_rebuilds_the_same_architecture(model):
    logits(model)
    rebuilt = Seq2SeqTransformer.from_config(model.get_config())
    logits(rebuilt)
    assert rebuilt.config == model.config
    assert rebuilt.count_params() == model.count_params()
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]


def test_sharing_embeddings_shares_one_matrix():
    shared = Seq2SeqTransformer(tiny_config())
    separate = Seq2SeqTransformer(tiny_config(share_embeddings=False))
    logits(shared), logits(separate)
    assert separate.count_params() - shared.count_params() == VOCAB * 32


def test_base_preset_has_the_papers_parameter_count():
    """Vaswani et al. (2017) report 65M for base with a shared 37k BPE vocabulary.

    Ours, counted by hand:
      shared embedding, also the output projection: 37,000 * 512       = 18,944,000
      encoder layer: attention 4 * (512*512 + 512) = 1,050,624, feed-forward
        512*2048 + 2048 + 2048*512 + 512 = 2,099,712, two LayerNorms 2,048
        -> 3,152,384, times 6                                           = 18,914,304
      decoder layer: two attentions 2,101,248 + feed-forward 2,099,712 +
        three LayerNorms 3,072 -> 4,204,032, times 6                    = 25,224,192
      final LayerNorms of the pre-LN encoder and decoder stacks: 2 * 1,024 = 2,048
      total                                                             = 63,084,544
    Sinusoidal positions have no weights. The paper's 65M is rounded and its exact
    accounting is unpublished; 63.1M is the figure commonly reproduced.
    """
    model = Seq2SeqTransformer(
        ModelConfig.preset("base", source_vocab_size=37_000, target_vocab_size=37_000)
    )
    model.build()
    assert model.count_params() == 63_084_544


def test_input_longer_than_max_length_is_a_clear_error():
    model = Seq2SeqTransformer(tiny_config(max_length=4))
    with pytest.raises(ValueError, match="encoder_inputs has 5 tokens but model.max_length is 4"):
        logits(model)


def repeated_batch_losses(model, steps=20):
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD),
        jit_compile=True,
    )
    targets = np.concatenate([DECODER_INPUTS[:, 1:], np.array([[EOS], [PAD]])], axis=1)
    targets[1, 2] = EOS
    inputs = {"encoder_inputs": SOURCE, "decoder_inputs": DECODER_INPUTS}
    history = model.fit(inputs, targets, batch_size=2, epochs=steps, shuffle=False, verbose=0)
    return history.history["loss"]


@pytest.mark.slow  # two XLA compilations of a training step
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_trains_under_xla_and_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    model = Seq2SeqTransformer(tiny_config())
    assert model.compute_dtype == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    losses = repeated_batch_losses(model)
    assert model.jit_compile
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
