import keras_hub
import numpy as np

from tf_transformer.config import ModelConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.decoding.search import generate, strip_after_eos
from tf_transformer.models import Seq2SeqTransformer

SOURCE = np.array([[5, 6, 7, EOS], [8, 9, EOS, PAD]], "int32")


def small_model():
    config = ModelConfig.preset(
        "tiny", source_vocab_size=30, target_vocab_size=30, d_model=32, ffn_dim=64, dropout=0.0
    )
    return Seq2SeqTransformer(config)


def argmax_without_cache(model, source, steps):
    """Reference greedy decoding: the full forward pass over the growing prefix."""
    prefix = np.full((len(source), 1), BOS, "int32")
    for _ in range(steps):
        logits = model({"encoder_inputs": source, "decoder_inputs": prefix})
        prefix = np.concatenate([prefix, np.argmax(logits[:, -1], -1)[:, None]], 1)
    return prefix[:, 1:]


def test_strip_after_eos_pads_the_first_eos_and_the_rest():
    np.testing.assert_array_equal(
        strip_after_eos(np.array([[7, EOS, 8, EOS], [7, 8, 9, 10]])),
        [[7, PAD, PAD, PAD], [7, 8, 9, 10]],
    )


def test_greedy_generation_equals_uncached_argmax_decoding():
    model = small_model()
    expected = np.asarray(strip_after_eos(argmax_without_cache(model, SOURCE, steps=6)))
    np.testing.assert_array_equal(generate(model, SOURCE, max_length=6), expected)


def test_top_k_1_sampling_equals_greedy():
    model = small_model()
    sampler = keras_hub.samplers.TopKSampler(k=1, seed=3)
    np.testing.assert_array_equal(
        generate(model, SOURCE, max_length=6, sampler=sampler), generate(model, SOURCE, 6)
    )
