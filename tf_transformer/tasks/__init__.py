"""Tasks: the only package that composes data, models, training, decoding, evaluation
and serving. One module per task, each with `train(experiment, output_dir,
export_path=None) -> metrics`; `run` picks it by the experiment's `task`."""

from __future__ import annotations

from typing import Any

from tf_transformer.config import ExperimentConfig
from tf_transformer.tasks import classification, denoising, language_model, translation

TASKS = {
    "translation": translation.train,
    "language_model": language_model.train,
    "classification": classification.train,
    "denoising": denoising.train,
}


def run(
    experiment: ExperimentConfig, output_dir: str, export_path: str | None = None
) -> dict[str, Any]:
    """Trains `experiment.task` into the run directory `output_dir` (and exports the
    model to `export_path`/N if given); returns the metrics it writes to metrics.json."""
    return TASKS[experiment.task](experiment, output_dir, export_path)
