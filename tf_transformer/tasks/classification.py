"""The classification task: labelled TSV files in, an encoder classifier trained with
`model.fit` (optionally from a pretrained encoder-decoder's encoder), validated by loss
and accuracy, scored on the test split (accuracy, macro-F1), saved and exported.

Run directory: see `training.run`, plus labels.txt (the label set in class-id order);
metrics.json holds test and validation accuracy and macro-F1, the loss history and how
many texts were cut to max_length.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from tf_transformer.config import ExperimentConfig
from tf_transformer.data import classification, tokenizer
from tf_transformer.decoding.classifier import TextClassifier, input_length, write_labels
from tf_transformer.evaluation.classification import classification_scores
from tf_transformer.models import TransformerClassifier
from tf_transformer.models.transfer import copy_layer_weights, encoder_layers
from tf_transformer.serving.export import export_classifier
from tf_transformer.training.pretrained import from_pretrained_run, load_pretrained_model
from tf_transformer.training.run import Run, run_directory

# Runs a classifier can start from: it takes their encoder.
PRETRAINED_TASKS = ("denoising", "translation", "classification")


def train(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Trains and validates a classifier on `experiment.data`'s TSV files, saves it
    (float32 model.keras, labels.txt), scores it on the test split and exports it to
    EXPORT_PATH/N when `export_path` is given; returns the metrics it writes."""
    experiment = from_pretrained_run(experiment, output_dir, PRETRAINED_TASKS)
    splits = {
        split: classification.read_labelled_tsv(classification.split_path(experiment.data, split))
        for split in ("train", "validation", "test")
    }
    with run_directory(
        experiment,
        output_dir,
        lambda data: [
            tokenizer.train_vocabulary(
                splits["train"].texts, tokenizer.vocabulary_paths(data)[0], data
            )
        ],
    ) as run:
        return _train(run, splits, export_path)


def _train(
    run: Run, splits: dict[str, classification.LabelledText], export_path: str | None
) -> dict[str, Any]:
    data = run.data
    vocabulary_path = tokenizer.vocabulary_paths(data)[0]
    text_tokenizer = tokenizer.load_tokenizer(vocabulary_path)
    labels = classification.label_names(splits["train"])
    experiment = dataclasses.replace(
        run.experiment,
        model=dataclasses.replace(
            run.experiment.model,
            vocab_size=int(text_tokenizer.vocab_size()),
            num_classes=len(labels),
        ),
    )
    run.save_config(experiment)
    if run.chief:
        write_labels(run.run_dir, labels)
    max_length = input_length(experiment)
    tokenized = {
        split: classification.tokenize_examples(
            examples, classification.class_ids(examples, labels), text_tokenizer, max_length
        )
        for split, examples in splits.items()
    }

    def initialize(model):
        pretrained = load_pretrained_model(experiment.train.init_from)
        copy_layer_weights(
            encoder_layers(model), encoder_layers(pretrained), experiment.train.init_from
        )

    model, metrics = run.fit(
        lambda: TransformerClassifier(experiment.model),
        lambda context, resumed: classification.make_dataset(
            tokenized["train"].dataset, data, context, initial_step=resumed, name="train"
        ),
        lambda context: classification.make_dataset(
            tokenized["validation"].dataset, data, context, training=False, name="validation"
        ),
        initialize=initialize if experiment.train.init_from else None,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    if not run.chief:
        return metrics
    serving_model = run.save_model(model)
    classifier = TextClassifier(serving_model, text_tokenizer, labels, max_length)
    scores = {
        split: classification_scores(
            classification.class_ids(splits[split], labels),
            classifier.probabilities(splits[split].texts),
        )
        for split in ("validation", "test")
    }
    metrics = {
        "test_accuracy": scores["test"]["accuracy"],
        "test_macro_f1": scores["test"]["macro_f1"],
        "validation_accuracy": scores["validation"]["accuracy"],
        "validation_macro_f1": scores["validation"]["macro_f1"],
        **metrics,
        "labels": labels,
        "examples": {split: tokenized[split].examples for split in tokenized},
        "truncated_texts": {split: tokenized[split].truncated for split in tokenized},
    }
    if export_path is not None:
        metrics["saved_model"] = export_classifier(
            serving_model, text_tokenizer, labels, max_length, [vocabulary_path], str(export_path)
        )
    return run.write_metrics(metrics)
