from pathlib import Path

import pytest

from tf_transformer import config
from tf_transformer.config import ExperimentConfig, ModelConfig


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"d_model": 100, "num_heads": 3},
            "d_model must be divisible by num_heads, got d_model=100",
        ),
        ({"num_encoder_layers": 0}, "num_encoder_layers must be a positive integer, got 0"),
        ({"ffn_dim": -4}, "ffn_dim must be a positive integer, got -4"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\), got 1.5"),
        ({"activation": "tanh"}, "activation must be one of"),
        (
            {"target_vocab_size": 7},
            "share_embeddings=True needs source_vocab_size == target_vocab_size",
        ),
        ({"heads": 4}, "Unknown config key model.heads"),
    ],
)
def test_bad_model_config_names_the_field_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.preset("tiny", **overrides)


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="Unknown model preset 'huge'; choose one of"):
        ModelConfig.preset("huge")


def test_presets_have_the_documented_sizes():
    small, base, big = (ModelConfig.preset(name) for name in ("small", "base", "big"))
    assert (small.d_model, small.num_heads, small.ffn_dim, small.num_encoder_layers) == (
        256,
        4,
        1024,
        3,
    )
    assert (base.d_model, base.num_heads, base.ffn_dim, base.num_decoder_layers) == (
        512,
        8,
        2048,
        6,
    )
    assert (big.d_model, big.num_heads, big.ffn_dim, big.dropout) == (1024, 16, 4096, 0.3)


def test_overrides_are_typed_and_unknown_keys_name_the_key():
    experiment = config.load(
        overrides=["train.peak_learning_rate=2e-3", "model.preset=small", "model.dropout=0.2"]
    )
    assert experiment.train.peak_learning_rate == 0.002
    assert (experiment.model.d_model, experiment.model.dropout) == (256, 0.2)
    with pytest.raises(ValueError, match="Unknown config key train.stepz; valid keys for train:"):
        config.load(overrides=["train.stepz=3"])
    with pytest.raises(ValueError, match="train.steps must be int, got 'many'"):
        config.load(overrides=["train.steps=many"])
    with pytest.raises(ValueError, match="Unknown config section 'trian'"):
        config.load(overrides=["trian.steps=3"])
    with pytest.raises(ValueError, match="must look like section.key=value"):
        config.load(overrides=["steps=3"])


def test_an_empty_value_clears_a_string_key_and_is_an_error_elsewhere(tmp_path):
    # YAML reads "key=" and "key:" as null: for a string key that is the empty string.
    path = tmp_path / "pretrain.yaml"
    path.write_text("task: denoising\ndenoising:\n  extra_text_files: a.txt\n")
    experiment = config.load([path], ["denoising.extra_text_files="])
    assert (experiment.denoising.extra_text_files, experiment.denoising.extra_text_paths()) == (
        "",
        (),
    )
    path.write_text("train:\n  frozen_layers:\n")
    assert config.load([path]).train.frozen_layers == ""
    with pytest.raises(ValueError, match="train.steps must be int, got None"):
        config.load(overrides=["train.steps="])


def test_yaml_files_merge_in_order_and_round_trip(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("model:\n  preset: small\ntrain:\n  steps: 10\n  seed: 4\n")
    second.write_text("train:\n  steps: 20\n")
    experiment = config.load([first, second])
    assert (experiment.model.d_model, experiment.train.steps, experiment.train.seed) == (256, 20, 4)
    config.save(experiment, tmp_path / "resolved.yaml")
    assert config.load([tmp_path / "resolved.yaml"]) == experiment


def test_bad_config_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Config file not found: .*missing.yaml"):
        config.load([tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        config.load([broken])


def test_default_experiment_is_the_tiny_synthetic_run():
    experiment = ExperimentConfig()
    assert experiment.model == ModelConfig.preset("tiny")
    assert experiment.data.source == "synthetic"


def test_configs_default_yaml_is_the_default_experiment():
    default_yaml = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert config.load([default_yaml]) == ExperimentConfig()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")), ids=str
)
def test_every_shipped_config_loads(path):
    experiment = config.load([path])
    assert experiment.train.steps > 0


def test_a_run_config_resolves_its_vocabulary_against_the_run_directory(tmp_path):
    experiment = config.load(overrides=["data.vocabulary_prefix=sentencepiece"])
    config.save(experiment, str(tmp_path / "config.yaml"))
    resolved = config.load_run(str(tmp_path))
    assert resolved.data.vocabulary_prefix == f"{tmp_path}/sentencepiece"
    config.save(experiment, "ram://runs/moved/config.yaml")
    assert config.load_run("ram://runs/moved/").data.vocabulary_prefix == (
        "ram://runs/moved/sentencepiece"
    )
    elsewhere = config.load(overrides=["data.vocabulary_prefix=gs://bucket/vocabulary"])
    config.save(elsewhere, str(tmp_path / "config.yaml"))
    assert config.load_run(str(tmp_path)).data.vocabulary_prefix == "gs://bucket/vocabulary"


def test_the_shipped_configs_name_their_tasks():
    shipped = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    tasks = {path.name: config.load([str(path)]).task for path in shipped}
    assert tasks["lm_multi30k.yaml"] == "language_model"
    assert tasks["default.yaml"] == tasks["multi30k.yaml"] == "translation"


def test_the_task_key_picks_the_model_section():
    language_model = config.load(overrides=["task=language_model", "model.num_layers=3"])
    assert isinstance(language_model.model, config.LanguageModelConfig)
    assert language_model.model.num_layers == 3
    assert config.ExperimentConfig.from_dict({}).task == "translation"
    with pytest.raises(ValueError, match="Unknown config key model.num_encoder_layers"):
        config.load(overrides=["task=language_model", "model.num_encoder_layers=2"])
    with pytest.raises(ValueError, match="task must be one of"):
        config.load(overrides=["task=summarization"])


def test_a_language_model_config_round_trips_through_yaml(tmp_path):
    experiment = config.load(overrides=["task=language_model", "model.preset=small"])
    config.save(experiment, str(tmp_path / "config.yaml"))
    assert config.load([str(tmp_path / "config.yaml")]) == experiment
