"""benchmarks/classifier_variants.py: how a --variant is read into a classifier config."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

from tf_transformer.config import ClassifierConfig, TrainConfig

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture
def variants(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports classifier_vs_keras_hub
    spec = importlib.util.spec_from_file_location(
        "classifier_variants", BENCHMARKS / "classifier_variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variant_settings_are_read_as_yaml_into_the_config(variants):
    name, overrides = variants.parse_variant(
        "post_ln_bert_init:normalize_first=false,kernel_stddev=0.02,pooling=first"
    )
    assert name == "post_ln_bert_init"
    assert overrides == {"normalize_first": False, "kernel_stddev": 0.02, "pooling": "first"}
    config = variants.variant_config(ClassifierConfig(vocab_size=50), overrides, "v.")
    assert (config.normalize_first, config.pooling, config.vocab_size) == (False, "first", 50)
    assert variants.parse_variant("base") == ("base", {})


def test_bad_variants_name_the_setting_or_key(variants):
    with pytest.raises(ValueError, match="'pooling' is not KEY=VALUE"):
        variants.parse_variant("first:pooling")
    with pytest.raises(ValueError, match="Unknown config key v.poling"):
        variants.variant_config(ClassifierConfig(), {"poling": "first"}, "v.")


def test_embedding_lr_multiplier_scales_only_the_embeddings_step(variants):
    overrides = variants.parse_variant("emb:embedding_lr_multiplier=10")[1]
    config = variants.variant_config(ClassifierConfig(vocab_size=50), overrides, "v.")
    training = TrainConfig(steps=10, peak_learning_rate=1e-3, warmup_steps=5)
    optimizer = variants.embedding_scaled_optimizer(training, overrides["embedding_lr_multiplier"])
    model = variants.benchmark.ours(config, training, optimizer)
    before = {variable.path: variable.numpy().copy() for variable in model.trainable_weights}
    ids = np.random.default_rng(0).integers(4, 50, (8, 6))
    model.train_on_batch(ids, np.arange(8) % 2, sample_weight=np.ones(8, "float32"))
    moved = {
        variable.path.split("/", 1)[1]: np.abs(variable.numpy() - before[variable.path]).max()
        for variable in model.trainable_weights
    }
    # Adam's first step moves every weight with a gradient by the learning rate.
    np.testing.assert_allclose(
        moved["source_embedding/embedding/embeddings"], 10 * moved["head/kernel"], rtol=1e-3
    )
    np.testing.assert_allclose(
        moved["encoder_block_0/ffn/inner/kernel"], moved["head/kernel"], rtol=1e-3
    )


def test_starting_again_draws_the_dropout_of_a_fresh_model(variants):
    config = ClassifierConfig(vocab_size=50, dropout=0.3, head_dropout=0.3)
    training = TrainConfig(steps=10, peak_learning_rate=1e-3, warmup_steps=5)
    ids = np.random.default_rng(0).integers(4, 50, (4, 6))
    model = variants.benchmark.ours(config, training)
    model(ids, training=True)  # a run before: the dropout seeds move on
    keras.utils.set_random_seed(1)
    variants.benchmark.start_again(model, variants.benchmark.ours(config, training))
    keras.utils.set_random_seed(1)
    fresh = variants.benchmark.ours(config, training)
    np.testing.assert_array_equal(model(ids, training=True), fresh(ids, training=True))
