"""`Translator` and `translate_file`: runs and files at any path or URL, line splitting."""

import dataclasses
import io
import os
import sys

import pytest
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.decoding.translator import Translator, read_lines, translate_file

SENTENCES = ["The dog sees the ball.", "", "Now we have danced."]


@pytest.fixture
def translator(tiny_run):
    # Per test: the autouse fixture's tf.random.set_seed clears the resources (the
    # SentencePiece op) of a translator made earlier. Files and paths are under test
    # here, not XLA: an uncompiled search spares each test a compilation.
    return Translator.from_run(tiny_run, jit_compile=False)


def copy_run(run_dir, destination: str) -> None:
    """Copies the run's model, vocabulary and config to `destination` (a local path or a
    URL), with the vocabulary recorded relative to the run, as training records it."""
    experiment = config_lib.load_run(str(run_dir))
    prefix = experiment.data.vocabulary_prefix
    tf.io.gfile.makedirs(destination)
    for path in dict.fromkeys(map(str, vocabulary_paths(experiment.data))):
        suffix = path[len(prefix) :]  # ".model", or ".en.model" per language
        target = config_lib.join_path(destination, config_lib.RUN_VOCABULARY_PREFIX + suffix)
        tf.io.gfile.copy(path, target)
    tf.io.gfile.copy(
        config_lib.join_path(str(run_dir), "model.keras"),
        config_lib.join_path(destination, "model.keras"),
    )
    data = dataclasses.replace(experiment.data, vocabulary_prefix=config_lib.RUN_VOCABULARY_PREFIX)
    config_lib.save(
        dataclasses.replace(experiment, data=data), config_lib.join_path(destination, "config.yaml")
    )


def test_a_moved_run_and_a_run_in_memory_translate_from_any_working_directory(
    translator, tiny_run, tmp_path, monkeypatch
):
    def translations(run_dir):
        return Translator.from_run(run_dir, jit_compile=False).translate(SENTENCES)

    expected = translator.translate(SENTENCES)
    copy_run(tiny_run, str(tmp_path / "moved" / "run"))
    copy_run(tiny_run, "ram://translator_test/run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert translations(str(tmp_path / "moved" / "run")) == expected
    assert translations("../moved/run") == expected
    assert translations("ram://translator_test/run") == expected
    assert os.listdir(elsewhere) == []  # no local "ram:" folder
    with pytest.raises(FileNotFoundError, match="No trained model in ram://nothing/run"):
        Translator.from_run("ram://nothing/run")


def recording(translator):
    """`translator`, keeping the lines it is given in `lines_read`."""
    translate_nbest_iter = translator.translate_nbest_iter
    translator.lines_read = []

    def recorded(sentences):
        for sentence in sentences:
            translator.lines_read.append(sentence)
            yield from translate_nbest_iter([sentence])

    translator.translate_nbest_iter = recorded
    return translator


@pytest.mark.parametrize("source", [b"a\rb\nc\n", b"a\rb\r\nc\r\n"])
def test_translate_file_splits_lines_on_newline_only(translator, tmp_path, source):
    """A lone "\\r" stays inside its line; "\\r\\n" ends a line like "\\n"."""
    expected = translator.translate(["a\rb", "c"])
    input_path, output_path = tmp_path / "source.txt", tmp_path / "output.txt"
    input_path.write_bytes(source)
    translate_file(recording(translator), str(input_path), str(output_path))
    assert translator.lines_read == ["a\rb", "c"]
    assert output_path.read_text(encoding="utf-8") == "".join(f"{line}\n" for line in expected)


def test_a_file_translated_to_standard_output_gives_only_the_translations(
    translator, tmp_path, capsys
):
    """The progress bar (Keras writes it to stdout) must not mix with the lines."""
    expected = translator.translate(["a\rb", "c"])
    input_path = tmp_path / "source.txt"
    input_path.write_bytes(b"a\rb\nc\n")
    translate_file(translator, str(input_path), None)
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in expected)


def test_standard_input_splits_lines_on_newline_only(translator, monkeypatch, capsys):
    expected = translator.translate(["a\rb", "c"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\rb\r\nc\n")))
    translate_file(recording(translator), None, None)
    assert translator.lines_read == ["a\rb", "c"]
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in expected)


def test_translate_file_reads_and_writes_urls(translator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tf.io.gfile.GFile("ram://translate_file_test/source.txt", "w") as source:
        source.write("\n".join(SENTENCES) + "\n")
    translate_file(
        translator, "ram://translate_file_test/source.txt", "ram://translate_file_test/out.txt"
    )
    with tf.io.gfile.GFile("ram://translate_file_test/out.txt") as output:
        assert output.read() == "".join(f"{line}\n" for line in translator.translate(SENTENCES))
    assert os.listdir(tmp_path) == []


def test_read_lines_reads_a_url_and_splits_on_newline_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tf.io.gfile.GFile("ram://read_lines_test/source.txt", "wb") as source:
        source.write(b"a\rb\r\n\nc \xff\n")
    assert read_lines("ram://read_lines_test/source.txt") == ["a\rb", "", "c \udcff"]
    with tf.io.gfile.GFile("ram://read_lines_test/long.txt", "wb") as source:
        source.write(b"first\r\n" + b"x" * 3_000_000 + b"\rlast")  # over a read block
    assert read_lines("ram://read_lines_test/long.txt") == ["first", "x" * 3_000_000 + "\rlast"]
    assert os.listdir(tmp_path) == []


def test_sentences_are_searched_sorted_by_length_and_returned_in_order(tiny_run):
    sentences = ["a b c d e f g h", "", "a", "a b c", "a b", "  ", "a b c d e"]
    config = config_lib.DecodeConfig(batch_size=2, beam_size=2)
    translator = Translator.from_run(tiny_run, config)
    batches = translator.batches(sentences)
    assert sorted(index for batch in batches for index in batch) == [0, 2, 3, 4, 6]
    lengths = [len(sentences[index].split()) for batch in batches for index in batch]
    assert lengths == sorted(lengths)  # blanks left out, shortest first
    # Each sentence's translation is its own, whatever else shares its batch.
    one_by_one = [translator.translate([sentence])[0] for sentence in sentences]
    assert translator.translate(sentences) == one_by_one
    assert one_by_one[1] == one_by_one[5] == "" and one_by_one[0] != ""


def test_sampling_batches_keep_the_input_order(tiny_run):
    config = config_lib.DecodeConfig(batch_size=2, sample=True)
    sentences = ["a b c d e", "a", "", "a b c"]
    assert Translator.from_run(tiny_run, config).batches(sentences) == [[0, 1], [3]]
