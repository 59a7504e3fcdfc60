"""`benchmark decode` on the tiny run, its sentences read from a URL."""

import json

from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.benchmark import benchmark_decode


def test_decode_benchmark_reads_a_url_line_by_line_and_prints_json_last(tiny_run, capsys):
    import tensorflow as tf

    with tf.io.gfile.GFile("ram://decode_benchmark/source.txt", "w") as source:
        source.write("The dog\rsees the ball.\nNow we have danced.\nMy cat sings.\n")
    result = benchmark_decode(
        str(tiny_run), "ram://decode_benchmark/source.txt", DecodeConfig(), jit_compile=False
    )
    assert result["sentences"] == 3 and result["beam_size"] == 1 and result["xla"] is False
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    limited = benchmark_decode(
        str(tiny_run), "ram://decode_benchmark/source.txt", DecodeConfig(), False, False, limit=2
    )
    assert limited["sentences"] == 2 and limited["cache"] is False
