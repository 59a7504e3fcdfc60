"""`evaluate`: translate a source file, score it against references, and the model's
perplexity on the pair; a language model's perplexity on a text file; a classifier's
accuracy and macro-F1 on a labelled TSV file."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from tf_transformer.data import classification, pipeline, sources
from tf_transformer.decoding.translator import Translator
from tf_transformer.evaluation.classification import classification_scores
from tf_transformer.evaluation.language_model import language_model_scores
from tf_transformer.evaluation.metrics import corpus_scores, perplexity

logger = logging.getLogger(__name__)


def evaluate_files(translator: Translator, source_path: str, reference_path: str) -> dict[str, Any]:
    """sacreBLEU, chrF and perplexity of `translator` on line-aligned files."""
    pairs = sources.parallel_file_pairs(source_path, reference_path)  # checks line counts
    source_lines, reference_lines = [], []
    for source, reference in pairs.as_numpy_iterator():
        source_lines.append(source.decode("utf-8"))
        reference_lines.append(reference.decode("utf-8"))
    results = corpus_scores(translator.translate(source_lines), reference_lines)
    if translator.data_config is not None:
        tokenized = pipeline.tokenize_pairs(
            pairs,
            translator.source_tokenizer,
            translator.target_tokenizer,
            translator.model_max_length,
            cache=False,
            name=str(source_path),
        )
        # Every pair counts here (no static shapes); no cache: the files are read once.
        data_config = dataclasses.replace(translator.data_config, static_shapes=False, cache="none")
        batches = pipeline.make_dataset(tokenized.dataset, data_config, training=False)
        results["perplexity"] = round(perplexity(translator.model, batches), 3)
        results["perplexity_pairs"] = tokenized.report.kept
    results["sentences"] = len(source_lines)
    return results


def evaluate_language_model_file(generator, path: str) -> dict[str, Any]:
    """Perplexity per token and per word of `generator`'s language model on the lines of
    `path` (local or any tf.io.gfile URL), packed as in training; returns them."""
    data_config = dataclasses.replace(generator.data_config, cache="none")
    lines = sources.text_file_lines(path)
    return language_model_scores(generator.model, generator.tokenizer, lines, data_config, path)


def evaluate_classifier_file(classifier, path: str) -> dict[str, Any]:
    """Accuracy and macro-F1 of a `TextClassifier` on a `text<TAB>label` file (checked
    as training files are: a label the run does not know is an error naming its line)."""
    examples = classification.read_labelled_tsv(path)
    class_ids = classification.class_ids(examples, classifier.labels)
    scores = classification_scores(class_ids, classifier.probabilities(examples.texts))
    return {**scores, "examples": len(class_ids)}
