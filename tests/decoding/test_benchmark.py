"""`benchmark decode` on the tiny run, its sentences read from a URL."""

import json

from tf_transformer.cli import main
from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.benchmark import benchmark_decode


def test_decode_benchmark_reads_a_url_line_by_line_and_the_cli_prints_json_last(tiny_run, capsys):
    import tensorflow as tf

    with tf.io.gfile.GFile("ram://decode_benchmark/source.txt", "w") as source:
        source.write("The dog\rsees the ball.\nNow we have danced.\nMy cat sings.\n")
    result = benchmark_decode(
        str(tiny_run), "ram://decode_benchmark/source.txt", DecodeConfig(), jit_compile=False
    )
    assert result["sentences"] == 3 and result["beam_size"] == 1 and result["xla"] is False
    assert capsys.readouterr().out == ""  # the library returns, the CLI prints
    arguments = ["benchmark", "decode", "--model", str(tiny_run), "--no-xla", "--json"]
    assert main([*arguments, "--src", "ram://decode_benchmark/source.txt"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["sentences"] == 3 and set(printed) == set(result)
    limited = benchmark_decode(
        str(tiny_run), "ram://decode_benchmark/source.txt", DecodeConfig(), False, False, limit=2
    )
    assert limited["sentences"] == 2 and limited["cache"] is False
