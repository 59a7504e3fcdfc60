"""Training: loss, metrics, learning-rate schedule, distribution strategy, model.fit."""
