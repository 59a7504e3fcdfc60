"""The translation task: parallel text in, an encoder-decoder trained and validated by
greedy BLEU, scored on the test split with sacreBLEU, saved and exported.

Run directory: see `training.run`; metrics.json holds test BLEU and chrF, the loss
history, dropped and unbatched pairs, and sample translations.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import tensorflow as tf

from tf_transformer.config import ExperimentConfig
from tf_transformer.data import pipeline, sources, tokenizer
from tf_transformer.decoding.translator import Translator
from tf_transformer.evaluation.metrics import corpus_scores
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.transfer import copy_layer_weights, model_layers
from tf_transformer.serving.export import export_translator
from tf_transformer.training.pretrained import from_pretrained_run, load_pretrained_model
from tf_transformer.training.run import Run, run_directory

# Runs a translation model can start from: it takes their whole encoder-decoder.
PRETRAINED_TASKS = ("denoising", "translation")


def text_pairs(pairs: tf.data.Dataset, limit: int | None = None) -> tuple[list[str], list[str]]:
    """The sources and targets of the first `limit` string pairs, as Python strings."""
    if limit is not None:
        pairs = pairs.take(limit)
    sources_text, targets_text = [], []
    for source, target in pairs.as_numpy_iterator():
        sources_text.append(source.decode("utf-8"))
        targets_text.append(target.decode("utf-8"))
    return sources_text, targets_text


def train(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Trains, validates (greedy BLEU), saves and scores a model on the test split (with
    the experiment's `decode` settings); returns the metrics it writes.

    The final model goes to OUTPUT_DIR/model.keras (float32, whatever the training
    precision) and, if `export_path` is given, is exported there as a versioned
    SavedModel (EXPORT_PATH/N, strings in and out). Paths are local or tf.io.gfile URLs.
    """
    experiment = from_pretrained_run(experiment, output_dir, PRETRAINED_TASKS)
    with run_directory(experiment, output_dir) as run:
        return _train(run, export_path)


def _train(run: Run, export_path: str | None) -> dict[str, Any]:
    data = run.data
    source_tokenizer, target_tokenizer = tokenizer.load_tokenizers(data)
    experiment = dataclasses.replace(
        run.experiment,
        model=dataclasses.replace(
            run.experiment.model,
            source_vocab_size=int(source_tokenizer.vocab_size()),
            target_vocab_size=int(target_tokenizer.vocab_size()),
        ),
    )
    run.save_config(experiment)
    train_config = experiment.train

    tokenize = functools.partial(
        pipeline.tokenize_pairs,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        max_length=min(data.max_length, experiment.model.max_length),
    )
    training_pairs = tokenize(sources.load_pairs(data, "train"), name="train")
    validation_pairs = tokenize(sources.load_pairs(data, "validation"), name="validation")
    validation_sources, validation_references = text_pairs(
        sources.load_pairs(data, "validation"), train_config.bleu_sentences
    )

    def validation_bleu(model):
        greedy_translator = Translator(model, source_tokenizer, target_tokenizer)

        def score() -> float:
            translations = greedy_translator.translate(validation_sources)
            return corpus_scores(translations, validation_references)["bleu"]

        return "bleu", score

    buckets = []

    def report_buckets(contexts):
        buckets.append(
            pipeline.bucket_report(training_pairs.length_counts, data, (contexts or [None])[0])
        )

    def initialize(model):
        pretrained = load_pretrained_model(train_config.init_from)
        copy_layer_weights(model_layers(model), model_layers(pretrained), train_config.init_from)

    model, metrics = run.fit(
        lambda: Seq2SeqTransformer(experiment.model),
        lambda context, resumed: pipeline.make_dataset(
            training_pairs.dataset, data, context, initial_step=resumed, name="train"
        ),
        lambda context: pipeline.make_dataset(
            validation_pairs.dataset, data, context, training=False, name="validation"
        ),
        validation_bleu,
        report_buckets,
        initialize=initialize if train_config.init_from else None,
    )
    if not run.chief:
        return metrics
    serving_model = run.save_model(model)

    test_sources, test_references = text_pairs(sources.load_pairs(data, "test"))
    test_translator = Translator(
        serving_model, source_tokenizer, target_tokenizer, experiment.decode
    )
    test_translations = test_translator.translate(test_sources)
    samples = list(zip(test_sources, test_references, test_translations, strict=True))[:5]
    metrics = {
        **corpus_scores(test_translations, test_references),
        **metrics,
        "dropped_pairs": {
            "train": training_pairs.report._asdict(),
            "validation": validation_pairs.report._asdict(),
        },
        # Pairs in buckets too small for one static-shape batch: never trained on.
        "unbatched_pairs": {"train": buckets[0].unbatched},
        "samples": [
            {"source": source, "reference": reference, "translation": translation}
            for source, reference, translation in samples
        ],
    }
    if export_path is not None:
        metrics["saved_model"] = export_translator(
            serving_model,
            source_tokenizer,
            target_tokenizer,
            experiment.decode,
            list(tokenizer.vocabulary_paths(data)),
            str(export_path),
        )
    return run.write_metrics(metrics)
