"""The exported SavedModel: signatures, fresh-process loading, threads, boundary inputs."""

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.cli import main
from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.translator import Translator

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
    assert {"serving_default", "translate_nbest", "sample"} <= set(signatures)
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
    sample = signatures["sample"]
    for name, dtype in (("temperature", "DT_FLOAT"), ("top_k", "DT_INT32"), ("top_p", "DT_FLOAT")):
        assert f"inputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: ()" in sample


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
