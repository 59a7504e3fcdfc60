import json

import pytest

from tf_transformer.cli import main
from tf_transformer.config import ModelConfig
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.training.benchmark import training_flops


def test_training_flops_counts_every_matmul_three_times():
    config = ModelConfig(
        source_vocab_size=10,
        target_vocab_size=10,
        d_model=4,
        num_heads=2,
        ffn_dim=8,
        num_encoder_layers=1,
        num_decoder_layers=1,
    )
    # Per token, 2 FLOPs per multiply-add. Q, K, V, output projections: 4 * 2 * 4 * 4 = 128;
    # feed-forward: 2 * 2 * 4 * 8 = 128.
    encoder_token = 128 + 2 * 2 * 2 * 4 + 128  # + scores and sum over 2 source positions
    decoder_token = 128 + 2 * 2 * 3 * 4 + 2 * 2 * 4 * 4 + 2 * 2 * 2 * 4 + 128
    cross_key_value = 2 * 2 * 4 * 4  # per source token
    logits = 2 * 4 * 10  # per target token
    forward = 2 * encoder_token + 2 * cross_key_value + 3 * decoder_token + 3 * logits
    assert training_flops(config, 1, 2, 3) == 3 * forward == 6432
    assert training_flops(config, 5, 2, 3) == 5 * 6432


def test_benchmark_train_prints_consistent_json(capsys):
    arguments = ["benchmark", "train", "--vocab", "50", "--d-model", "16", "--heads", "2"]
    arguments += ["--ffn", "32", "--layers", "1", "--batch", "4", "--src-len", "6"]
    assert main([*arguments, "--tgt-len", "5", "--steps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"tokens_per_s", "step_s", "params", "gflops_per_s"}
    assert result["tokens_per_s"] == pytest.approx(4 * 11 / result["step_s"], rel=1e-2)
    config = ModelConfig(
        source_vocab_size=50,
        target_vocab_size=50,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        max_length=6,
    )
    model = Seq2SeqTransformer(config)
    model.build()
    assert result["params"] == model.count_params()
    flops = training_flops(config, 4, 6, 5)
    assert result["gflops_per_s"] == pytest.approx(flops / result["step_s"] / 1e9, abs=0.006)
