"""A language model's SavedModel: prompts in, continuations out, as the Python
`Generator` gives them, loadable without this package."""

import json
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from tf_transformer.cli import main
from tf_transformer.decoding.generator import Generator

PROMPTS = ["The dog", "", "My cat says that"]
SAMPLING = dict(temperature=0.9, top_k=20, top_p=0.95)


@pytest.fixture(scope="module")
def saved_model(tiny_lm_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("saved_models") / "lm"
    arguments = ["export", "--model", str(tiny_lm_run), "--output", str(output)]
    assert main([*arguments, "--max-length", "12"]) == 0
    return output / "1"


@pytest.fixture(scope="module")
def loaded(saved_model):
    return tf.saved_model.load(str(saved_model))


@pytest.fixture
def generator(tiny_lm_run):
    # Per test: see tests/decoding/test_generator.py.
    return Generator.from_run(tiny_lm_run, jit_compile=False)


def test_signatures(loaded):
    assert set(loaded.signatures) == {"serving_default", "generate"}


def test_serving_default_equals_python_greedy_generation(loaded, generator):
    outputs = loaded.signatures["serving_default"](inputs=tf.constant(PROMPTS))
    texts = [text.decode() for text in outputs["outputs"].numpy()]
    assert texts == generator.generate(PROMPTS, max_length=12)


def test_generate_signature_samples_as_python_does(loaded, generator):
    outputs = loaded.signatures["generate"](
        inputs=tf.constant(PROMPTS),
        temperature=tf.constant(SAMPLING["temperature"]),
        top_k=tf.constant(SAMPLING["top_k"]),
        top_p=tf.constant(SAMPLING["top_p"]),
        num_return_sequences=tf.constant(3),
        seed=tf.constant(11, tf.int64),
    )
    assert outputs["outputs"].shape == (3, 3)
    texts = [text.decode() for row in outputs["outputs"].numpy() for text in row]
    expected = generator.generate(
        PROMPTS, max_length=12, num_return_sequences=3, seed=11, **SAMPLING
    )
    assert texts == expected


def test_bad_generate_inputs_fail_naming_them(loaded):
    arguments = dict(
        inputs=tf.constant(PROMPTS),
        temperature=tf.constant(1.0),
        top_k=tf.constant(0),
        top_p=tf.constant(1.0),
        num_return_sequences=tf.constant(1),
        seed=tf.constant(1, tf.int64),
    )
    for name, value, message in (
        ("num_return_sequences", tf.constant(0), "num_return_sequences must be >= 1"),
        ("temperature", tf.constant(0.0), "temperature must be > 0"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures["generate"](**{**arguments, name: value})


def test_a_fresh_process_without_the_package_generates_the_same(saved_model, loaded):
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["tf_transformer"] = None  # importing the package would fail
        import tensorflow as tf, tensorflow_text  # noqa: F401
        model = tf.saved_model.load({str(saved_model)!r})
        outputs = model.signatures["serving_default"](inputs=tf.constant({PROMPTS!r}))
        print(json.dumps([t.decode() for t in outputs["outputs"].numpy()]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = loaded.signatures["serving_default"](inputs=tf.constant(PROMPTS))["outputs"]
    assert json.loads(result.stdout.splitlines()[-1]) == [t.decode() for t in expected.numpy()]


def test_xla_export_is_refused_for_a_language_model(tiny_lm_run, tmp_path, capsys):
    arguments = ["export", "--model", str(tiny_lm_run), "--output", str(tmp_path), "--xla"]
    assert main(arguments) == 2
    assert "XLA export is for translation runs" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
