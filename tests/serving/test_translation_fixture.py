"""A translation run trained and exported by the code before the package was reorganised
(commit 9af2dd4; see tests/fixtures/make_translation_run.py) loads in today's code, and
its SavedModel and `Translator` give exactly the outputs recorded then."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.config import DecodeConfig
from tf_transformer.decoding.translator import Translator
from tf_transformer.serving.export import export_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECORDED = json.loads((FIXTURES / "translation_run_outputs.json").read_text())
BEAM = DecodeConfig(beam_size=2)
SAMPLING = dict(temperature=0.8, top_k=20, top_p=0.9, seed=7)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    copy = tmp_path_factory.mktemp("fixture") / "translation_run"
    shutil.copytree(FIXTURES / "translation_run", copy)
    return str(copy)


@pytest.fixture(scope="module")
def saved_model(run_dir, tmp_path_factory):
    return tf.saved_model.load(export_run(run_dir, str(tmp_path_factory.mktemp("export")), BEAM, 2))


def call(saved_model, name: str, inputs: tf.Tensor):
    if name == "sample_with_seed":
        return saved_model.signatures[name](
            inputs=inputs,
            temperature=tf.constant(SAMPLING["temperature"]),
            top_k=tf.constant(SAMPLING["top_k"]),
            top_p=tf.constant(SAMPLING["top_p"]),
            seed=tf.constant(SAMPLING["seed"], tf.int64),
        )
    return saved_model.signatures[name](inputs=inputs)


@pytest.fixture(scope="module")
def xla_saved_model(run_dir, tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("xla_export"))
    return tf.saved_model.load(export_run(run_dir, export_dir, BEAM, 2, jit_compile=True))


def assert_recorded(result, name: str):
    expected = RECORDED["signatures"][name]
    outputs = tf.nest.map_structure(lambda text: text.decode(), result["outputs"].numpy().tolist())
    assert outputs == expected["outputs"]
    np.testing.assert_allclose(result["scores"].numpy(), expected["scores"], atol=1e-4)


@pytest.mark.parametrize("name", ["serving_default", "translate_nbest", "sample_with_seed"])
def test_the_export_of_the_old_checkpoint_gives_the_recorded_outputs(saved_model, name):
    assert_recorded(call(saved_model, name, tf.constant(RECORDED["inputs"])), name)


@pytest.mark.slow  # the XLA export alone takes about two minutes
@pytest.mark.parametrize("name", ["serving_default", "translate_nbest"])
def test_the_xla_export_gives_the_recorded_outputs_at_every_batch_bucket(xla_saved_model, name):
    signature = xla_saved_model.signatures[name]
    library = signature.graph.as_graph_def().library.function
    assert any(function.attr["_XlaMustCompile"].b for function in library)
    assert_recorded(signature(inputs=tf.constant(RECORDED["inputs"])), name)
    # One sentence at a time: batches of one row, and source lengths of their own.
    for index, sentence in enumerate(RECORDED["inputs"][:3]):
        alone = signature(inputs=tf.constant([sentence]))
        expected = RECORDED["signatures"][name]
        assert [t.decode() for t in np.ravel(alone["outputs"])] == np.ravel(
            expected["outputs"][index]
        ).tolist()
        np.testing.assert_allclose(
            np.ravel(alone["scores"]), np.ravel(expected["scores"][index]), atol=1e-4
        )


def test_the_translator_gives_the_recorded_translations(run_dir):
    assert Translator.from_run(run_dir).translate(RECORDED["inputs"]) == RECORDED["greedy"]
    assert Translator.from_run(run_dir, BEAM).translate(RECORDED["inputs"]) == RECORDED["beam_2"]


def test_the_recorded_translations_are_not_trivial():
    translated = [text for text in RECORDED["greedy"] if text]
    assert len(translated) == 8 and len(set(translated)) == 8
