"""The CTranslate2 export: the converted model searches as ours does."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from tf_transformer.cli import main
from tf_transformer.config import DecodeConfig
from tf_transformer.data.synthetic import generate_pairs
from tf_transformer.decoding.translator import Translator
from tf_transformer.serving.ctranslate2_export import (
    ctranslate2_options,
    ctranslate2_translate,
    export_ctranslate2,
)

ctranslate2 = pytest.importorskip(
    "ctranslate2", reason='the CTranslate2 export needs pip install "tf_transformer[ctranslate2]"'
)

# The committed 300-step run (tests/fixtures/make_translation_run.py).
RUN = Path(__file__).resolve().parents[1] / "fixtures" / "translation_run"
MAX_LENGTH = 24
SOURCE_MAX_LENGTH = 32  # the fixture model's max_length


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture run converted into a CTranslate2 model directory."""
    output_dir = tmp_path_factory.mktemp("ct2") / "model"
    export_ctranslate2(str(RUN), str(output_dir))
    return output_dir


def _sentences() -> list[str]:
    sources = [source for source, _ in generate_pairs(40, seed=999)]
    return [*sources[:20], "", *sources[20:]]


def _processor(model_dir) -> sentencepiece.SentencePieceProcessor:
    return sentencepiece.SentencePieceProcessor(
        model_file=str(Path(model_dir) / "sentencepiece.model")
    )


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translations_equal_ours(converted, beam_size):
    sentences = _sentences()
    ours = Translator.from_run(
        str(RUN), DecodeConfig(beam_size=beam_size, max_length=MAX_LENGTH, length_penalty=0.0)
    ).translate(sentences)
    theirs = ctranslate2_translate(
        ctranslate2.Translator(str(converted), device="cpu"),
        _processor(converted),
        sentences,
        MAX_LENGTH,
        SOURCE_MAX_LENGTH,
        beam_size=beam_size,
        length_penalty=0.0,  # both rank by the summed log-probability
    )
    assert theirs == ours
    assert ours[20] == "" and len(set(ours)) > 20  # real, varied translations


def test_scores_equal_ours(converted):
    """Greedy scores (summed log-probabilities, EOS included) agree to float32 noise."""
    sentences = _sentences()[:8]
    translator = Translator.from_run(str(RUN), DecodeConfig(max_length=MAX_LENGTH))
    ours = [hypotheses[0].score for hypotheses in translator.translate_nbest_iter(sentences)]
    processor = _processor(converted)
    results = ctranslate2.Translator(str(converted), device="cpu").translate_batch(
        [
            processor.encode(sentence, out_type=str)[: SOURCE_MAX_LENGTH - 1]
            for sentence in sentences
        ],
        return_scores=True,
        **ctranslate2_options(MAX_LENGTH),
    )
    np.testing.assert_allclose([result.scores[0] for result in results], ours, atol=1e-4)


def test_int8_weights_are_smaller_and_translate(converted, tmp_path):
    quantized = export_ctranslate2(str(RUN), str(tmp_path / "int8"), quantization="int8")
    sizes = [tf.io.gfile.stat(f"{path}/model.bin").length for path in (converted, quantized)]
    assert sizes[1] < 0.6 * sizes[0]
    assert (Path(quantized) / "sentencepiece.model").exists()
    translations = ctranslate2_translate(
        ctranslate2.Translator(quantized, device="cpu", compute_type="int8"),
        _processor(quantized),
        _sentences(),
        MAX_LENGTH,
        SOURCE_MAX_LENGTH,
    )
    assert len(translations) == 41 and translations[20] == ""


def test_refuses_other_tasks_a_full_directory_and_unknown_quantizations(
    tiny_lm_run, converted, tmp_path
):
    with pytest.raises(ValueError, match="language_model run: only translation runs"):
        export_ctranslate2(str(tiny_lm_run), str(tmp_path / "lm"))
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_ctranslate2(str(RUN), str(converted))
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_ctranslate2(str(RUN), str(tmp_path / "q"), quantization="int3")


def test_cli_export(tmp_path, capsys):
    output_dir = tmp_path / "cli"
    assert (
        main(
            ["export", "--format", "ctranslate2", "--model", str(RUN), "--output", str(output_dir)]
        )
        == 0
    )
    assert "to the CTranslate2 model" in capsys.readouterr().out
    assert {"model.bin", "sentencepiece.model"} <= {path.name for path in output_dir.iterdir()}
    assert (
        main(
            [
                "export",
                "--model",
                str(RUN),
                "--output",
                str(tmp_path / "s"),
                "--quantization",
                "int16",
            ]
        )
        == 2
    )
    assert "--quantization for a SavedModel must be int8, got int16" in capsys.readouterr().err
    xla = ["export", "--format", "ctranslate2", "--xla", "--model", str(RUN), "--output", "x"]
    assert main(xla) == 2
    assert "--xla is for --format savedmodel" in capsys.readouterr().err
    shutil.rmtree(output_dir)
