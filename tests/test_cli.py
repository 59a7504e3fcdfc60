import subprocess
import sys

import pytest

from tf_transformer.cli import main


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "--set", "train.stepz=1"], "Unknown config key train.stepz"),
        (["train", "--set", "model.d_model=100", "--set", "model.num_heads=3"], "d_model=100"),
        (["train", "--config", "missing.yaml"], "Config file not found: missing.yaml"),
    ],
)
def test_train_reports_bad_config_with_exit_code_2(arguments, message, capsys):
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("tf-transformer train: error: ")
    assert message in error


@pytest.mark.parametrize("command", ["train", "build-vocab"])
def test_every_subcommand_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "tf_transformer.cli", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"usage: tf-transformer {command}" in result.stdout
