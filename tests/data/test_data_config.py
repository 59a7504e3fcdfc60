from __future__ import annotations

import re

import pytest

from tf_transformer.config import DataConfig, ExperimentConfig, ModelConfig, from_dict, load


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"source": "ftp"},
            "source must be one of ('synthetic', 'tfds', 'files', 'multi30k'), got 'ftp'",
        ),
        ({"source": "tfds"}, 'source="tfds" needs tfds_name, e.g. "wmt14_translate/de-en"'),
        ({"source": "multi30k"}, "source='multi30k' needs data_dir"),
        (
            {"vocab_model_type": "wordpiece"},
            "vocab_model_type must be one of ('unigram', 'bpe'), got 'wordpiece'",
        ),
        ({"batch_tokens": 0}, "batch_tokens must be a positive integer, got 0"),
        (
            {"target_language": "en"},
            "source_language and target_language must differ, both are 'en'",
        ),
        ({"bucket_growth": 1.0}, "bucket_growth must be > 1, got 1.0"),
        (
            {"min_bucket_length": 200, "max_length": 128},
            "min_bucket_length (200) must not exceed max_length (128)",
        ),
        (
            {"batch_tokens": 64, "max_length": 128},
            "batch_tokens (64) must be at least max_length (128), or the longest pairs would "
            "fit in no batch",
        ),
    ],
)
def test_invalid_values_are_named(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DataConfig(**values)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=re.escape("Unknown config key data.vocab_sise")):
        from_dict(DataConfig, {"vocab_sise": 8000}, where="data.")


@pytest.mark.parametrize("cache", ["", "memroy", "None", " /tmp/cache", "gs://bucket/cache/"])
def test_cache_must_be_memory_none_or_a_file_prefix(cache):
    message = (
        'cache must be "memory", "none" or a file path prefix with a "/" such as ./wmt14, '
        "/tmp/cache/wmt14 or gs://bucket/cache/wmt14 (files PREFIX.NAME.shard-I-of-N.*), "
        f"got {cache!r}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        DataConfig(cache=cache)


@pytest.mark.parametrize(
    "cache", ["memory", "none", "./wmt14", "/tmp/cache/wmt14", "gs://b/cache/wmt14"]
)
def test_cache_modes_are_accepted(cache):
    assert DataConfig(cache=cache).cache == cache


def test_model_max_length_must_cover_the_longest_bucket():
    model = ModelConfig.preset("tiny", max_length=32)
    with pytest.raises(ValueError) as error:
        ExperimentConfig(model=model, data=DataConfig(max_length=64))
    assert str(error.value) == (
        "model.max_length (32) must be at least data.max_length (64): the longest bucket "
        "pads sequences to data.max_length tokens"
    )
    assert ExperimentConfig(model=model, data=DataConfig(max_length=32)).data.max_length == 32
    with pytest.raises(ValueError, match=re.escape("model.max_length (32) must be at least")):
        load(overrides=["model.max_length=32"])
