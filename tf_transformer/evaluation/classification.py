"""Classification scores: accuracy and macro-F1 (Keras's F1Score, per class then averaged)."""

from __future__ import annotations

import keras
import numpy as np


def classification_scores(class_ids, probabilities) -> dict[str, float]:
    """Accuracy and macro-F1 (both in [0, 100]) of `probabilities` ``[N, C]`` against
    the true `class_ids` ``[N]``."""
    class_ids = np.asarray(class_ids)
    probabilities = np.asarray(probabilities, np.float32)
    if not len(class_ids):
        raise ValueError("no examples to score")
    predicted = probabilities.argmax(axis=1)
    f1 = keras.metrics.F1Score(average="macro", threshold=None)
    f1.update_state(np.eye(probabilities.shape[1], dtype=np.float32)[class_ids], probabilities)
    return {
        "accuracy": round(100.0 * float((predicted == class_ids).mean()), 2),
        "macro_f1": round(100.0 * float(f1.result()), 2),
    }
