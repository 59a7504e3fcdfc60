"""The exported SavedModel: signatures, fresh-process loading, threads, boundary inputs."""

import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.cli import main
from tf_transformer.config import DecodeConfig
from tf_transformer.data.synthetic import generate_pairs
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.decoding.translator import Translator
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.serving.export import export_translator

SENTENCES = [
    "The dog sees the ball.",
    "",
    "My cat says that we have painted a ball.",
    "   ",
    "Now we have danced.",
]
BEAM = DecodeConfig(beam_size=2)
SAMPLING = dict(temperature=0.8, top_k=20, top_p=0.9)
NUM_SAMPLES = 2


@pytest.fixture(scope="module")
def saved_model(tiny_run, tmp_path_factory) -> Path:
    """Version 1 of the tiny run's export (beam 2, two samples per sentence)."""
    output = tmp_path_factory.mktemp("saved_models") / "tiny"
    arguments = ["export", "--model", str(tiny_run), "--output", str(output), "--beam-size", "2"]
    assert main([*arguments, "--num-samples", str(NUM_SAMPLES)]) == 0
    return output / "1"


@pytest.fixture(scope="module")
def loaded(saved_model):
    return tf.saved_model.load(str(saved_model))


def _run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # a fresh process loads TensorFlow and the SavedModel
def test_fresh_process_without_the_package_matches_the_python_translator(saved_model, tiny_run):
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["tf_transformer"] = None  # make the package unimportable
        try:
            import tf_transformer
            raise SystemExit("tf_transformer is importable")
        except ImportError:
            pass
        import numpy as np
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the SentencePiece ops)

        model = tf.saved_model.load({str(saved_model)!r})
        inputs = tf.constant({SENTENCES!r})
        best = model.signatures["serving_default"](inputs=inputs)
        nbest = model.signatures["translate_nbest"](inputs=inputs)
        sampled = model.signatures["sample"](
            inputs=inputs,
            temperature=tf.constant({SAMPLING["temperature"]}),
            top_k=tf.constant({SAMPLING["top_k"]}),
            top_p=tf.constant({SAMPLING["top_p"]}),
        )
        print(json.dumps({{
            name: {{
                "outputs": np.char.decode(result["outputs"].numpy().astype(bytes)).tolist(),
                "scores": result["scores"].numpy().tolist(),
            }}
            for name, result in (("best", best), ("nbest", nbest), ("sampled", sampled))
        }}))
        """
    )
    result = _run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])

    best = list(Translator.from_run(tiny_run, BEAM).translate_nbest_iter(SENTENCES))
    assert served["best"]["outputs"] == [hypotheses[0].text for hypotheses in best]
    assert served["best"]["scores"] == pytest.approx([h[0].score for h in best], abs=1e-4)

    nbest_config = DecodeConfig(beam_size=2, num_return_sequences=2)
    nbest = list(Translator.from_run(tiny_run, nbest_config).translate_nbest_iter(SENTENCES))
    assert served["nbest"]["outputs"] == [[h.text for h in row] for row in nbest]
    np.testing.assert_allclose(
        served["nbest"]["scores"], [[h.score for h in row] for row in nbest], atol=1e-4
    )
    assert served["nbest"]["outputs"][1] == ["", ""]

    sample_config = DecodeConfig(sample=True, num_return_sequences=NUM_SAMPLES, **SAMPLING)
    sampled = list(Translator.from_run(tiny_run, sample_config).translate_nbest_iter(SENTENCES))
    assert served["sampled"]["outputs"] == [[h.text for h in row] for row in sampled]
    assert served["sampled"]["outputs"][0][0] != served["best"]["outputs"][0]


def test_saved_model_cli_shows_the_signatures_with_their_dtypes(saved_model):
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "saved_model_cli"), "show", "--all"]
        + ["--dir", str(saved_model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    signatures = {
        block.split("']", 1)[0]: block for block in shown.stdout.split("signature_def['")[1:]
    }
    assert {"serving_default", "translate_nbest", "sample", "sample_with_seed"} <= set(signatures)
    serving = signatures["serving_default"]
    assert "inputs['inputs'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in serving
    assert (
        "outputs['outputs'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in serving
    )
    assert "outputs['scores'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1)" in serving
    assert (
        "outputs['outputs'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1, 2)"
        in (signatures["translate_nbest"])
    )
    sample, sample_with_seed = signatures["sample"], signatures["sample_with_seed"]
    for name, dtype in (("temperature", "DT_FLOAT"), ("top_k", "DT_INT32"), ("top_p", "DT_FLOAT")):
        assert f"inputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: ()" in sample
        assert f"inputs['{name}'] tensor_info:\n        dtype: {dtype}" in sample_with_seed
    assert "inputs['seed']" not in sample
    seed_input = "inputs['seed'] tensor_info:\n        dtype: DT_INT64\n        shape: ()"
    assert seed_input in sample_with_seed


def test_saved_model_cli_run_translates_a_string(saved_model, loaded):
    # saved_model_cli with the tensorflow-text ops registered, as README.md shows.
    script = (
        "import sys, tensorflow_text; "
        "from tensorflow.python.tools.saved_model_cli import main; sys.exit(main())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "run", "--dir", str(saved_model), "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--input_exprs", 'inputs=["Now we have danced."]'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = loaded.signatures["serving_default"](inputs=tf.constant(["Now we have danced."]))
    translation = expected["outputs"].numpy()[0]
    assert translation
    assert f"Result for output key outputs:\n[{translation!r}]" in result.stdout


def test_eight_threads_get_the_sequential_outputs(loaded):
    serve = loaded.signatures["serving_default"]
    batches = [[SENTENCES[i % 5], SENTENCES[(i + 2) % 5]] for i in range(16)]
    sequential = [serve(inputs=tf.constant(batch))["outputs"].numpy().tolist() for batch in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(
            pool.map(
                lambda batch: serve(inputs=tf.constant(batch))["outputs"].numpy().tolist(), batches
            )
        )
    assert concurrent == sequential


def _serve(loaded, inputs):
    result = loaded.signatures["serving_default"](inputs=tf.constant(inputs, tf.string))
    return result["outputs"].numpy().tolist(), result["scores"].numpy().tolist()


def test_empty_batch_gives_empty_outputs(loaded):
    assert _serve(loaded, []) == ([], [])
    nbest = loaded.signatures["translate_nbest"](inputs=tf.constant([], tf.string))
    assert nbest["outputs"].shape == (0, 2) and nbest["scores"].shape == (0, 2)


def test_empty_string_gives_empty_string(loaded):
    assert _serve(loaded, ["", " \t"]) == ([b"", b""], [0.0, 0.0])


def test_overlong_input_is_truncated_to_the_model_maximum(loaded, tiny_run):
    overlong = " ".join(["dog"] * 200)
    outputs, _ = _serve(loaded, [overlong])
    assert [outputs[0].decode()] == Translator.from_run(tiny_run, BEAM).translate([overlong])
    # Only the first max_length - 1 pieces count: more words change nothing.
    assert _serve(loaded, [overlong + " cat ball"])[0] == outputs


def test_invalid_utf8_is_read_as_replacement_characters(loaded):
    outputs, scores = _serve(loaded, [b"\xff\xfe dog", "\ufffd\ufffd dog"])
    assert outputs[0] == outputs[1] and scores[0] == scores[1]


def test_export_writes_the_next_version(tiny_run, saved_model):
    assert main(["export", "--model", str(tiny_run), "--output", str(saved_model.parent)]) == 0
    assert sorted(path.name for path in saved_model.parent.iterdir()) == ["1", "2"]
    assert (saved_model.parent / "2" / "assets" / "sentencepiece.model").is_file()


def test_an_int8_export_translates_as_the_quantized_python_translator(tiny_run, tmp_path):
    output = tmp_path / "int8"
    arguments = ["export", "--model", str(tiny_run), "--output", str(output), "--beam-size", "2"]
    assert main([*arguments, "--quantization", "int8"]) == 0
    loaded = tf.saved_model.load(str(output / "1"))
    assert {"int8", "float32"} <= {variable.dtype.name for variable in loaded.variables}
    translator = Translator.from_run(str(tiny_run), BEAM, jit_compile=False)
    translator.model.quantize("int8")
    expected = [hypotheses[0] for hypotheses in translator.translate_nbest_iter(SENTENCES)]
    result = loaded.signatures["serving_default"](inputs=tf.constant(SENTENCES))
    assert [text.decode() for text in result["outputs"].numpy()] == [h.text for h in expected]
    np.testing.assert_allclose(result["scores"], [h.score for h in expected], atol=1e-4)


def _sample(loaded, inputs, seed=None, **settings):
    """The `sample` signature's outputs, or `sample_with_seed`'s with a seed."""
    arguments = {"inputs": tf.constant(inputs, tf.string)}
    for name, dtype in (("temperature", tf.float32), ("top_k", tf.int32), ("top_p", tf.float32)):
        arguments[name] = tf.constant({**SAMPLING, **settings}[name], dtype)
    if seed is None:
        return loaded.signatures["sample"](**arguments)["outputs"].numpy().tolist()
    arguments["seed"] = tf.constant(seed, tf.int64)
    return loaded.signatures["sample_with_seed"](**arguments)["outputs"].numpy().tolist()


def test_sample_with_seed_repeats_per_seed_and_matches_the_python_translator(loaded, tiny_run):
    first = _sample(loaded, SENTENCES, seed=5)
    assert _sample(loaded, SENTENCES, seed=5) == first
    assert _sample(loaded, SENTENCES, seed=6) != first
    # `sample` uses the export's seed: the run's decode.seed here.
    run_seed = Translator.from_run(tiny_run).decode_config.seed
    assert _sample(loaded, SENTENCES) == _sample(loaded, SENTENCES, seed=run_seed)
    config = DecodeConfig(sample=True, num_return_sequences=NUM_SAMPLES, seed=5, **SAMPLING)
    python = list(Translator.from_run(tiny_run, config).translate_nbest_iter(SENTENCES))
    assert [[text.decode() for text in row] for row in first] == [
        [h.text for h in row] for row in python
    ]


def test_eight_threads_sampling_the_same_request_and_seed_get_identical_samples(loaded):
    inputs = SENTENCES * 3
    expected = {None: _sample(loaded, inputs), 9: _sample(loaded, inputs, seed=9)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda seed: (seed, _sample(loaded, inputs, seed)), [None, 9] * 8))
    assert all(result == expected[seed] for seed, result in results)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -0.5}, "temperature must be > 0"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
    ],
)
def test_bad_sampling_parameters_fail_with_a_clear_error(loaded, settings, message):
    for seed in (None, 3):
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            _sample(loaded, SENTENCES[:1], seed, **settings)


def test_a_request_of_1000_sentences_runs_in_chunks_with_the_outputs_of_32_at_a_time(
    loaded, tiny_run
):
    sentences = [source for source, _ in generate_pairs(1000)]
    sentences[::97] = [""] * len(sentences[::97])
    whole = _serve(loaded, sentences)
    parts = [_serve(loaded, sentences[start : start + 32]) for start in range(0, 1000, 32)]
    assert whole[0] == [text for part in parts for text in part[0]]
    np.testing.assert_allclose(whole[1], [score for part in parts for score in part[1]], atol=1e-5)


def test_a_request_over_the_decode_batch_size_samples_as_the_python_translator(loaded, tiny_run):
    """The SavedModel samples a request batch_size inputs at a time, each batch with its
    own seed, as the Python translator does; blank inputs keep their places."""
    config = DecodeConfig(sample=True, num_return_sequences=NUM_SAMPLES, seed=4, **SAMPLING)
    translator = Translator.from_run(tiny_run, config)
    sentences = [source for source, _ in generate_pairs(2 * config.batch_size + 5)]
    sentences[3] = sentences[config.batch_size + 1] = ""
    python = [[h.text for h in row] for row in translator.translate_nbest_iter(sentences)]
    served = [[text.decode() for text in row] for row in _sample(loaded, sentences, seed=4)]
    assert served == python
    # The batches draw apart: the same sentence in two batches gets other samples.
    repeated = [sentences[0]] * (config.batch_size + 1)
    served = [[text.decode() for text in row] for row in _sample(loaded, repeated, seed=4)]
    assert served[0] == python[0] and served[-1] != served[0]


def _bfloat16_copy(model):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = Seq2SeqTransformer(model.config)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.build()
    mixed.set_weights(model.get_weights())
    return mixed


def _graph_dtypes(function) -> set:
    """Every dtype attribute of the nodes of a concrete function and its library."""
    graph = function.graph.as_graph_def()
    nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
    return {
        tf.dtypes.as_dtype(value.type)
        for node in nodes
        for value in node.attr.values()
        if value.type
    }


@pytest.mark.slow
def test_a_mixed_bfloat16_model_exports_as_float32_to_a_url(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    translator = Translator.from_run(tiny_run, BEAM, jit_compile=False)
    mixed = _bfloat16_copy(translator.model)
    mixed_translator = Translator(
        mixed, translator.source_tokenizer, translator.target_tokenizer, BEAM, jit_compile=False
    )
    # Without a float32 copy, the export would compute these bfloat16 scores.
    bfloat16_scores = [h[0].score for h in mixed_translator.translate_nbest_iter(SENTENCES)]
    expected = list(translator.translate_nbest_iter(SENTENCES))
    assert np.abs(np.subtract(bfloat16_scores, [h[0].score for h in expected])).max() > 1e-3

    version_dir = export_translator(
        mixed,
        translator.source_tokenizer,
        translator.target_tokenizer,
        BEAM,
        list(vocabulary_paths(translator.data_config)),
        "ram://export_test/models",
    )
    assert version_dir == "ram://export_test/models/1"
    assert tf.io.gfile.listdir("ram://export_test/models") == ["1"]
    assert tf.io.gfile.exists(f"{version_dir}/assets/sentencepiece.model")
    exported = tf.saved_model.load(version_dir)
    assert {v.dtype for v in exported.variables if v.dtype.is_floating} == {tf.float32}
    serve = exported.signatures["serving_default"]
    assert tf.bfloat16 not in _graph_dtypes(serve)
    outputs, scores = _serve(exported, SENTENCES)
    assert [text.decode() for text in outputs] == [h[0].text for h in expected]
    np.testing.assert_allclose(scores, [h[0].score for h in expected], atol=1e-4)
    assert mixed.compute_dtype == "bfloat16"  # the caller's model is left as it was
    assert os.listdir(tmp_path) == []  # no local "ram:" folder


def _export_with(monkeypatch, tiny_run, output_dir: str, write_out):
    """`export_translator` of the tiny run to `output_dir`, with `write_out` in place of
    the SavedModel writer (no tracing: these tests are about the version directories)."""
    # ExportArchive() makes an instance of the backend's own archive class.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", write_out)
    translator = Translator.from_run(tiny_run)
    return export_translator(
        translator.model,
        translator.source_tokenizer,
        translator.target_tokenizer,
        translator.decode_config,
        list(vocabulary_paths(translator.data_config)),
        output_dir,
    )


def _write(path: str, text: str) -> None:
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(path, "w") as file:
        file.write(text)


def _read(path: str) -> str:
    with tf.io.gfile.GFile(path) as file:
        return file.read()


def _versions(output_dir: str) -> list[str]:
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(output_dir))


@pytest.mark.parametrize("where", ["local", "ram"])
def test_a_failed_export_leaves_the_other_versions_and_no_temporary_directory(
    tiny_run, tmp_path, monkeypatch, where
):
    output_dir = str(tmp_path / "models") if where == "local" else "ram://failed_export/models"
    _write(f"{output_dir}/1/saved_model.pb", "version 1")

    def another_export_lands_then_ours_fails(self, filepath, **kwargs):
        _write(f"{filepath}/saved_model.pb", "ours, half written")
        _write(f"{output_dir}/2/saved_model.pb", "another exporter's version 2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _export_with(monkeypatch, tiny_run, output_dir, another_export_lands_then_ours_fails)
    assert _versions(output_dir) == ["1", "2"]
    assert _read(f"{output_dir}/1/saved_model.pb") == "version 1"
    assert _read(f"{output_dir}/2/saved_model.pb") == "another exporter's version 2"


@pytest.mark.parametrize("where", ["local", "ram"])
def test_an_export_takes_the_next_free_version_when_another_lands_first(
    tiny_run, tmp_path, monkeypatch, where
):
    output_dir = str(tmp_path / "models") if where == "local" else "ram://raced_export/models"
    _write(f"{output_dir}/1/saved_model.pb", "version 1")

    def write_while_another_export_lands(self, filepath, **kwargs):
        assert not filepath.rstrip("/").rsplit("/", 1)[-1].isdigit()  # not a version yet
        _write(f"{filepath}/variables/variables.index", "our variables")
        _write(f"{filepath}/saved_model.pb", "our graph")
        _write(f"{output_dir}/2/saved_model.pb", "another exporter's version 2")

    version_dir = _export_with(monkeypatch, tiny_run, output_dir, write_while_another_export_lands)
    assert version_dir == f"{output_dir}/3"
    assert _versions(output_dir) == ["1", "2", "3"]
    assert _read(f"{output_dir}/2/saved_model.pb") == "another exporter's version 2"
    assert _read(f"{output_dir}/3/saved_model.pb") == "our graph"
    assert _read(f"{output_dir}/3/variables/variables.index") == "our variables"
    assert tf.io.gfile.exists(f"{output_dir}/3/assets/sentencepiece.model")
