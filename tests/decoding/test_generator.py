"""`Generator`: prompts in, continuations out, from a trained tiny language model; the
CLI `generate` and `evaluate`, and the run-kind errors."""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from tf_transformer.cli import main
from tf_transformer.constants import BOS, PAD
from tf_transformer.decoding.generator import Generator, prompt_token_ids
from tf_transformer.decoding.translator import Translator

PROMPTS = ["The dog", "My cat says that", "Now"]


@pytest.fixture
def generator(tiny_lm_run):
    # Per test: the autouse seeding fixture's tf.random.set_seed clears TensorFlow's
    # eager kernel cache, which frees the SentencePiece resource of a tokenizer made
    # before it.
    return Generator.from_run(tiny_lm_run)


def test_prompts_are_left_padded_after_bos(generator):
    ids, lengths = generator.prompt_ids(["The dog", ""])
    pieces = generator.tokenizer.tokenize(["The dog"]).to_list()[0]
    assert ids.shape[1] == 16  # one LENGTH_QUANTUM
    np.testing.assert_array_equal(ids[0, -len(pieces) - 1 :], [BOS, *pieces])
    assert (np.asarray(ids[0, : -len(pieces) - 1]) == PAD).all()
    np.testing.assert_array_equal(ids[1, -1:], [BOS])
    np.testing.assert_array_equal(lengths, [len(pieces) + 1, 1])


def test_greedy_continues_each_prompt(generator):
    texts = generator.generate(PROMPTS, max_length=8)
    assert len(texts) == 3
    for prompt, text in zip(PROMPTS, texts, strict=True):
        assert text.startswith(prompt) and len(text) > len(prompt)


def test_top_k_1_equals_greedy(generator):
    assert generator.generate(PROMPTS, max_length=8, top_k=1, seed=5) == generator.generate(
        PROMPTS, max_length=8
    )


def test_samples_repeat_with_their_seed_and_differ_at_temperature_1(generator):
    first = generator.generate(
        PROMPTS, max_length=10, temperature=1.0, num_return_sequences=4, seed=3
    )
    again = generator.generate(
        PROMPTS, max_length=10, temperature=1.0, num_return_sequences=4, seed=3
    )
    assert len(first) == 12 and first == again
    for row in range(3):
        samples = first[4 * row : 4 * row + 4]
        assert all(sample.startswith(PROMPTS[row]) for sample in samples)
        assert len(set(samples)) > 1, samples
    other = generator.generate(
        PROMPTS, max_length=10, temperature=1.0, num_return_sequences=4, seed=4
    )
    assert other != first


def test_beam_search_returns_the_n_best(generator):
    hypotheses = generator.generate_with_scores(
        PROMPTS, max_length=8, beam_size=3, num_return_sequences=3
    )
    assert [len(row) for row in hypotheses] == [3, 3, 3]
    for row in hypotheses:
        scores = [hypothesis.score for hypothesis in row]
        assert scores == sorted(scores, reverse=True)


def test_an_empty_prompt_generates_from_the_start_of_a_sentence(generator):
    (text,) = generator.generate([""], max_length=8)
    assert text.strip()


def test_a_long_prompt_is_truncated_from_the_left_with_a_warning(generator, caplog):
    long_prompt = " ".join(["the dog sees the ball"] * 20)
    with caplog.at_level(logging.WARNING):
        (text,) = generator.generate([long_prompt], max_length=4)
    assert "truncated from the left" in caplog.text
    ids, _ = generator.prompt_ids([long_prompt])
    context = generator.model_max_length - 1
    assert ids.shape[1] == context
    # The prompt's last `context` pieces (BOS dropped with the rest), then new text.
    pieces = generator.tokenizer.tokenize([long_prompt]).to_list()[0]
    kept = generator.tokenizer.detokenize([pieces[-context:]]).numpy()[0].decode()
    assert text.startswith(kept) and len(text) > len(kept)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(num_return_sequences=0), "num_return_sequences must be a positive integer"),
        (dict(temperature=0.0), "temperature must be positive"),
        (dict(temperature=-1.0), "temperature must be positive"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    ],
)
def test_bad_generation_settings_are_errors(generator, settings, message):
    with pytest.raises(ValueError, match=message):
        generator.generate(PROMPTS, **settings)


def test_runs_of_the_other_kind_are_errors(tiny_lm_run, tiny_run, capsys):
    with pytest.raises(ValueError, match="is a language_model run, not a translation model"):
        Translator.from_run(tiny_lm_run)
    with pytest.raises(ValueError, match="is a translation run, not a language model"):
        Generator.from_run(tiny_run)
    assert main(["translate", "--model", str(tiny_lm_run)]) == 2
    assert "use tf-transformer generate" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_run), "A dog"]) == 2
    assert "use tf-transformer translate" in capsys.readouterr().err


def test_cli_generate_prints_what_python_generates(generator, tiny_lm_run, capsys):
    arguments = ["generate", "--model", str(tiny_lm_run), "--max-length", "10", "--seed", "3"]
    assert main([*arguments, "--temperature", "1.0", "--num-return-sequences", "2", *PROMPTS]) == 0
    lines = capsys.readouterr().out.splitlines()
    hypotheses = generator.generate_with_scores(
        PROMPTS, max_length=10, seed=3, temperature=1.0, num_return_sequences=2
    )
    assert lines == [f"{h.score:.4f}\t{h.text}" for row in hypotheses for h in row]
    assert main([*arguments, "The dog"]) == 0
    assert capsys.readouterr().out.splitlines() == generator.generate(["The dog"], max_length=10)


def test_cli_evaluate_reports_perplexity_per_token_and_word(tiny_lm_run, tmp_path, capsys):
    text = tmp_path / "text.en"
    text.write_text("The dog sees the ball.\n\nMy cat has danced.\n")
    assert main(["evaluate", "--model", str(tiny_lm_run), "--src", str(text), "--json"]) == 0
    results = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert results["lines"] == 2 and results["dropped_empty_lines"] == 1
    assert results["words"] == 9 + 2  # words plus one EOS per line
    assert 1.0 < results["perplexity"] < results["word_perplexity"]


def test_prompt_ids_in_a_graph_equal_the_eager_ones(generator):
    prompts = tf.constant(["The dog", "", "My cat says that we have painted a ball."])
    eager, _ = prompt_token_ids(generator.tokenizer, prompts, 40)
    graph, _ = tf.function(lambda p: prompt_token_ids(generator.tokenizer, p, 40))(prompts)
    np.testing.assert_array_equal(graph, eager)
