import keras
import numpy as np
import pytest

from tf_transformer.config import ModelConfig
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.precision import float32_copy

SOURCE = np.array([[5, 6, 7, 3], [8, 9, 3, 0]], "int32")
TARGET = np.array([[2, 5, 6], [2, 7, 0]], "int32")
CONFIG = ModelConfig.preset(
    "tiny", source_vocab_size=30, target_vocab_size=30, d_model=32, ffn_dim=64, dropout=0.0
)


def built_model(policy: str) -> Seq2SeqTransformer:
    keras.config.set_dtype_policy(policy)
    try:
        model = Seq2SeqTransformer(CONFIG)
    finally:
        keras.config.set_dtype_policy("float32")
    model({"encoder_inputs": SOURCE, "decoder_inputs": TARGET})
    return model


def logits(model):
    return np.asarray(model({"encoder_inputs": SOURCE, "decoder_inputs": TARGET}))


def test_float32_copy_of_a_mixed_bfloat16_model_computes_as_the_float32_model():
    mixed = built_model("mixed_bfloat16")
    reference = built_model("float32")
    reference.set_weights(mixed.get_weights())
    copy = float32_copy(mixed)
    assert copy is not mixed
    assert mixed.compute_dtype == "bfloat16"  # the original is left as it was
    assert copy.compute_dtype == "float32" and copy.dtype_policy.name == "float32"
    assert {variable.dtype for variable in copy.weights} == {"float32"}
    assert copy.config == mixed.config
    assert [variable.path for variable in copy.weights] == [v.path for v in mixed.weights]
    for copied, original in zip(copy.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, original)
    np.testing.assert_allclose(logits(copy), logits(reference), rtol=1e-6, atol=1e-6)
    # bfloat16 really computed differently: the copy is not the mixed model's numbers.
    assert np.abs(logits(mixed) - logits(reference)).max() > 1e-3


def test_float32_copy_of_a_float32_model_is_the_model_itself():
    model = built_model("float32")
    assert float32_copy(model) is model


def test_float32_copy_of_an_unbuilt_model_is_refused():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = Seq2SeqTransformer(CONFIG)
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="has no weights yet"):
        float32_copy(model)
