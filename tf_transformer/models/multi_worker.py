"""Makes `keras.Model.fit` work under MultiWorkerMirroredStrategy (Keras 3.15, TF 2.21).

keras-team/keras issue 20585 (open): under MultiWorkerMirroredStrategy, Keras's
TensorFlow trainer
1. all-reduces the first input batch across workers (`_maybe_symbolic_build`) only to
   learn its shapes, which fails on nested and integer inputs such as ours; and
2. reduces every scalar metric with ``strategy.reduce("MEAN", value, axis=0)``
   (`reduce_per_replica`), which fails on scalars.

We chose two narrow overrides in the model class over a training loop of our own:
`model.fit`, its callbacks (BackupAndRestore, checkpoints, TensorBoard) and the run
directory stay exactly as on one machine. Remove this mixin once the upstream issue is
fixed.
"""

from __future__ import annotations

from keras import ops, tree


class MultiWorkerFitMixin:
    """Mixed into a `keras.Model` before `keras.Model` in the bases."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # One local replica's batch has the shapes Keras needs; no cross-worker reduce.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: self.distribute_strategy.experimental_local_results(value)[0],
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _is_multi_worker(self) -> bool:
        strategy = self.distribute_strategy
        replicas = strategy.num_replicas_in_sync
        return replicas > 1 and replicas > len(strategy.extended.worker_devices)

    def _with_batch_axis(self, logs):
        # Metric values are already synchronised; a leading axis of 1 lets the
        # trainer's MEAN over axis 0 return them unchanged.
        if not self._is_multi_worker():
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    def train_step(self, data):
        return self._with_batch_axis(super().train_step(data))

    def test_step(self, data):
        return self._with_batch_axis(super().test_step(data))
