"""benchmarks/gpu_check.py end to end at a tiny size, on the CPU (MFU null there)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_trains_decodes_exports_and_prints_one_json_line(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.main(
        [
            "--output-dir",
            str(tmp_path / "run"),
            "--throughput-steps",
            "2",
            "--set",
            "model.d_model=32",
            "model.ffn_dim=64",
            "model.num_encoder_layers=1",
            "model.num_decoder_layers=1",
            "data.synthetic_train_size=300",
            "data.synthetic_eval_size=8",
            "data.vocab_size=150",
            "data.batch_tokens=512",
            "train.steps=6",
            "train.eval_every=6",
            "train.warmup_steps=2",
            "train.bleu_sentences=4",
        ]
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["gpu"] is None and result["mfu"] is None and result["gpus"] == 0
    assert result["precision"] == "float32"  # precision auto on a CPU
    assert result["train_steps"] == 6
    assert result["saved_model"] == f"{tmp_path / 'run'}/export/1"
    assert result["train_tokens_per_s"] > 0 and result["greedy_sentences_per_s"] > 0
    assert 0 <= result["test_bleu"] <= 100
