"""`tf-transformer translate` and `evaluate` on a tiny trained run."""

import json
import logging
import subprocess
import sys

import pytest

from tf_transformer.cli import main
from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.benchmark import compile_every_shape
from tf_transformer.decoding.translator import Translator

SENTENCES = ["The dog sees the ball.", "", "My cat says that we have painted a ball."]


def test_translate_preserves_line_count_and_empty_lines(tiny_run, tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    output = tmp_path / "output.txt"
    assert (
        main(
            ["translate", "--model", str(tiny_run), "--input", str(source), "--output", str(output)]
        )
        == 0
    )
    lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 3
    assert lines[1] == ""
    assert lines == Translator.from_run(tiny_run).translate(SENTENCES)


def test_overlong_input_is_truncated_with_a_warning(tiny_run, caplog):
    translator = Translator.from_run(tiny_run, jit_compile=False)
    with caplog.at_level(logging.WARNING):
        translations = translator.translate([" ".join(["dog"] * 80)])
    assert len(translations) == 1
    assert "truncated to the model's max_length 32" in caplog.text


def test_invalid_utf8_lines_are_translated_with_a_warning_naming_file_and_line(
    tiny_run, tmp_path, caplog
):
    source = tmp_path / "source.txt"
    source.write_bytes(b"The dog sees the ball.\n\xff\xfe dog\n\xef\xbf\xbd\xef\xbf\xbd dog\n")
    output = tmp_path / "output.txt"
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                ["translate", "--model", str(tiny_run), "--input", str(source)]
                + ["--output", str(output)]
            )
            == 0
        )
    lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 3
    assert lines[1] == lines[2]  # bad bytes read as U+FFFD
    assert f"1 line(s) of {source} are not valid UTF-8 (first: line 2)" in caplog.text


def test_evaluate_prints_json_last(tiny_run, tmp_path, capsys):
    source, reference = tmp_path / "src.txt", tmp_path / "ref.txt"
    source.write_text("The dog sees the ball.\nNow we have danced.\n", encoding="utf-8")
    reference.write_text("Der Hund sieht den Ball.\nJetzt haben wir getanzt.\n", encoding="utf-8")
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_run),
                "--src",
                str(source),
                "--ref",
                str(reference),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"bleu", "chrf", "bleu_signature", "perplexity"}
    assert result["sentences"] == 2 and result["perplexity_pairs"] == 2
    assert result["perplexity"] > 1.0


def test_evaluate_names_mismatched_files(tiny_run, tmp_path, capsys):
    source, reference = tmp_path / "src.txt", tmp_path / "ref.txt"
    source.write_text("one\ntwo\n", encoding="utf-8")
    reference.write_text("eins\n", encoding="utf-8")
    assert (
        main(["evaluate", "--model", str(tiny_run), "--src", str(source), "--ref", str(reference)])
        == 2
    )
    error = capsys.readouterr().err
    assert "src.txt" in error and "ref.txt" in error


@pytest.mark.parametrize("beam_size", [1, 3])
def test_cached_and_uncached_decoding_give_the_same_translations(tiny_run, beam_size):
    decode = DecodeConfig(beam_size=beam_size, max_length=20)
    sentences = [SENTENCES[0], SENTENCES[2], "Now we have danced."]
    cached = Translator.from_run(tiny_run, decode).translate_nbest_iter(sentences)
    uncached = Translator.from_run(tiny_run, decode, use_cache=False).translate_nbest_iter(
        sentences
    )
    for with_cache, without_cache in zip(cached, uncached, strict=True):
        assert with_cache[0].text == without_cache[0].text
        assert with_cache[0].score == pytest.approx(without_cache[0].score, abs=1e-4)


@pytest.mark.slow  # a fresh process imports TensorFlow and loads the run again
def test_translate_command_in_a_fresh_process_reads_stdin(tiny_run):
    result = subprocess.run(
        [sys.executable, "-m", "tf_transformer.cli", "translate", "--model", str(tiny_run)],
        input="\n".join(SENTENCES) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:-1] == Translator.from_run(tiny_run).translate(SENTENCES)


def test_decode_benchmark_compiles_each_search_shape_before_timing(tiny_run):
    translator = Translator.from_run(tiny_run, DecodeConfig(batch_size=2))
    short, long = "a b", " ".join(["word"] * 20)  # 1 and 2 LENGTH_QUANTUM blocks
    sentences = [short, short, long, short, short, short]
    assert compile_every_shape(translator, sentences) == 2
    traces = translator._search.experimental_get_tracing_count()
    assert traces == 2
    translator.translate(sentences)
    assert translator._search.experimental_get_tracing_count() == traces
