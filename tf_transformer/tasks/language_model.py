"""The language-model task: monolingual text in (one language of any corpus), a
decoder-only Transformer trained on packed sequences with `model.fit`, validated by
perplexity, scored on the test split (per token and per word), saved and exported.

Run directory: see `training.run`; metrics.json holds test and validation perplexity,
the loss history, the packing report (real-token share, dropped lines) and samples
generated from the first test lines' opening words.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tf_transformer.config import ExperimentConfig
from tf_transformer.data import packing, sources, tokenizer
from tf_transformer.decoding.generator import Generator
from tf_transformer.evaluation.language_model import language_model_scores
from tf_transformer.models import TransformerLanguageModel
from tf_transformer.serving.export import export_generator
from tf_transformer.training.run import (
    Run,
    run_directory,
)

# Words of each of the first test lines that prompt the samples in metrics.json.
SAMPLE_PROMPT_WORDS = 3


def train(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Trains and validates a language model on `experiment.data`'s source-language
    text, saves it (float32 model.keras), scores it on the test split, and exports it to
    EXPORT_PATH/N when `export_path` is given; returns the metrics it writes."""
    with run_directory(
        experiment,
        output_dir,
        lambda data: tokenizer.build_vocabulary(data, (data.source_language,)),
    ) as run:
        return _train(run, export_path)


def _train(run: Run, export_path: str | None) -> dict[str, Any]:
    data = run.data
    vocabulary_path = tokenizer.vocabulary_paths(data)[0]
    text_tokenizer = tokenizer.load_tokenizer(vocabulary_path)
    experiment = dataclasses.replace(
        run.experiment,
        model=dataclasses.replace(
            run.experiment.model, vocab_size=int(text_tokenizer.vocab_size())
        ),
    )
    run.save_config(experiment)
    sequence_length = data.max_length
    training_text = packing.pack_lines(
        sources.load_lines(data, "train"), text_tokenizer, sequence_length, name="train"
    )
    validation_text = packing.pack_lines(
        sources.load_lines(data, "validation"),
        text_tokenizer,
        sequence_length,
        training=False,
        name="validation",
    )
    # The best checkpoint and early stopping follow the validation loss.
    model, metrics = run.fit(
        lambda: TransformerLanguageModel(experiment.model),
        lambda context, resumed: packing.make_packed_dataset(
            training_text.dataset, data, context, initial_step=resumed, name="train"
        ),
        lambda context: packing.make_packed_dataset(
            validation_text.dataset, data, context, training=False, name="validation"
        ),
    )
    if not run.chief:
        return metrics
    serving_model = run.save_model(model)
    test = language_model_scores(
        serving_model, text_tokenizer, sources.load_lines(data, "test"), data, name="test"
    )
    prompts = [
        " ".join(line.decode("utf-8").split()[:SAMPLE_PROMPT_WORDS])
        for line in sources.load_lines(data, "test").take(3).as_numpy_iterator()
    ]
    generator = Generator(serving_model, text_tokenizer, experiment.decode)
    metrics = {
        "test_perplexity": test["perplexity"],
        "test_word_perplexity": test["word_perplexity"],
        "validation_perplexity": metrics["history"].get("val_perplexity", [None])[-1],
        **metrics,
        "packing": {
            "train": training_text.report._asdict(),
            "validation": validation_text.report._asdict(),
        },
        "samples": [
            {"prompt": prompt, "generation": generation}
            for prompt, generation in zip(prompts, generator.generate(prompts), strict=True)
        ],
    }
    if export_path is not None:
        metrics["saved_model"] = export_generator(
            serving_model, text_tokenizer, experiment.decode, [vocabulary_path], str(export_path)
        )
    return run.write_metrics(metrics)
