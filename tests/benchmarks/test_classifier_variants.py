"""benchmarks/classifier_variants.py: how a --variant is read into a classifier config."""

import importlib.util
from pathlib import Path

import pytest

from tf_transformer.config import ClassifierConfig

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
