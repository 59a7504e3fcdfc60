import os
import subprocess
import sys

import pytest

from tf_transformer.cli import is_startup_noise, main


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


STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796239031.257946    2921 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796239031.258247    2921 cudart_stub.cc:31] Could not find cuda drivers",
    "E0000 00:00:1796240499.908315   11190 util.cc:131] oneDNN supports DT_INT64 only on",
    "E0000 00:00:1796239570.148385    4407 cuda_platform.cc:52] failed call to cuInit",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
]
KEPT_LINES = [
    "W0000 00:00:1796239570.148385    4407 graph_launch.cc:10] a warning from elsewhere",
    "WARNING:tf_transformer.decoding.translator:Source of 35 tokens truncated",
    "tf-transformer train: error: Unknown config key train.stpes",
    "UserWarning: `shuffle=True` was passed, but will be ignored",
]


def test_startup_noise_is_recognised_and_nothing_else():
    assert [line for line in STARTUP_LINES if not is_startup_noise(line)] == []
    assert [line for line in KEPT_LINES if is_startup_noise(line)] == []


@pytest.mark.slow  # three fresh processes
def test_the_console_script_is_quiet_unless_verbose():
    """TensorFlow's start-up lines reach stderr only with --verbose; the result and our
    own errors still do."""
    arguments = ["benchmark", "train", "--vocab", "20", "--d-model", "8", "--heads", "2"]
    arguments += ["--ffn", "8", "--layers", "1", "--batch", "2", "--src-len", "4"]
    arguments += ["--tgt-len", "4", "--steps", "1", "--json", "--no-xla"]
    script = "import sys; from tf_transformer.cli import console_main; sys.exit(console_main())"

    def run(*extra):
        return subprocess.run(
            [sys.executable, "-c", script, *extra],
            capture_output=True,
            text=True,
            timeout=300,
            env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
        )

    quiet, verbose = run(*arguments), run("--verbose", *arguments)
    assert quiet.returncode == verbose.returncode == 0
    assert '"tokens_per_s"' in quiet.stdout
    assert "oneDNN" not in quiet.stderr and "absl::InitializeLog" not in quiet.stderr
    # TensorFlow prints its oneDNN notice on some CPUs only (not on AMD EPYC); the absl
    # line on every machine.
    assert "absl::InitializeLog" in verbose.stderr
    failed = run("train", "--set", "train.stpes=3")
    assert failed.returncode == 2
    assert "Unknown config key train.stpes" in failed.stderr


def test_decode_flags_override_the_runs_decode_section(tiny_run):
    from tf_transformer.cli import _decode_config, build_parser

    args = build_parser().parse_args(
        ["translate", "--model", str(tiny_run), "--stop-rule", "exact", "--beam-size", "3"]
    )
    decode = _decode_config(args)
    assert (decode.stop_rule, decode.beam_size) == ("exact", 3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["translate", "--model", "r", "--stop-rule", "never"])
