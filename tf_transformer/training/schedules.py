"""Linear warmup then inverse-square-root decay (Vaswani et al., 2017, 5.3)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_transformer")
class InverseSquareRootSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * min(step / warmup, sqrt(warmup / step))`` for 1-based `step`.

    Rises linearly to `peak_learning_rate` at `warmup_steps`, then decays as
    1/sqrt(step). The paper's schedule is this with peak = (d_model * warmup)^-0.5.

    Args:
        peak_learning_rate: the rate reached at the end of warmup.
        warmup_steps: number of optimizer updates of linear warmup.
        batches_per_update: the optimizer's gradient accumulation steps. Keras calls
            the schedule with its count of batches (`_iterations`); the schedule counts
            updates.
    """

    def __init__(self, peak_learning_rate=1e-3, warmup_steps=4000, batches_per_update=1):
        if peak_learning_rate <= 0 or warmup_steps <= 0:
            raise ValueError(
                "peak_learning_rate and warmup_steps must be positive, got "
                f"{peak_learning_rate!r} and {warmup_steps!r}"
            )
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.batches_per_update = batches_per_update

    def __call__(self, step):
        step = ops.cast(step // self.batches_per_update, "float32") + 1.0
        warmup = float(self.warmup_steps)
        return self.peak_learning_rate * ops.minimum(step / warmup, ops.sqrt(warmup / step))

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "batches_per_update": self.batches_per_update,
        }
