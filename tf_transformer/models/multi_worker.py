"""Makes `keras.Model.fit` right under every tf.distribute strategy (Keras 3.15, TF 2.21).

Three things Keras's TensorFlow trainer gets wrong, fixed by overrides in the model
class rather than a training loop of our own (so `model.fit`, its callbacks and the run
directory stay exactly as on one device):

1. XLA under several replicas. `compile(jit_compile=True)` makes Keras compile the whole
   cross-device `strategy.run` as one XLA program, which cannot read the other replicas'
   variables ("Trying to access resource .../replica_1 located in device CPU:1";
   https://www.tensorflow.org/xla/known_issues#tfvariable_on_a_different_device). Here
   each replica's forward pass, loss, gradients and metric updates are one XLA program
   (traced per replica device); the gradient all-reduce and the optimizer update run
   outside it, as without XLA.
2. The logged loss. Keras weights each replica's (already globally normalised) loss by
   its batch size, which is wrong when bucketing gives replicas different batch sizes.
   Our losses return each replica's share of the global mean (see
   `training.losses.MaskedLabelSmoothedCrossEntropy`), so every replica counts once.
3. Gradient clipping. Keras's optimizer clips to `global_clipnorm` (and, under the
   float16 loss scale, checks the gradients are finite) on each replica's partial
   gradients, then all-reduces them: the norm is not the global batch's, and replicas
   can disagree. Here the step all-reduces the gradients first and the optimizer
   applies them as they are.
4. keras-team/keras issue 20585 (open): under MultiWorkerMirroredStrategy the trainer
   all-reduces the first input batch to learn its shapes (fails on integer inputs) and
   reduces scalar metrics over axis 0 (fails on scalars). Remove those two overrides
   once the upstream issue is fixed.
"""

from __future__ import annotations

import contextlib
import threading

import tensorflow as tf
from keras import ops, tree
from keras.src.losses.loss import unscale_loss_for_distribution
from keras.src.trainers.data_adapters import data_adapter_utils

from tf_transformer.constants import PAD

# Per replica thread: the global real-token count given to the XLA-compiled step.
_given_counts = threading.local()


def global_real_tokens(targets):
    """Non-PAD tokens of `targets` summed over the global batch (all replicas).

    An XLA-compiled replica step cannot all-reduce, so the step counts before XLA and
    the losses inside it read the count it was given."""
    given = getattr(_given_counts, "value", None)
    if given is not None:
        return given
    count = ops.sum(ops.cast(ops.not_equal(targets, PAD), "float32"))
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
        return count
    return replica_context.all_reduce(tf.distribute.ReduceOp.SUM, count)


@contextlib.contextmanager
def _given_global_real_tokens(count):
    _given_counts.value = count
    try:
        yield
    finally:
        _given_counts.value = None


def _sum_over_replicas(gradients):
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
        return gradients
    return replica_context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)


def _already_summed(grads_and_vars):
    return list(grads_and_vars)


class MultiWorkerFitMixin:
    """Mixed into a `keras.Model` before `keras.Model` in the bases."""

    def compile(self, *args, jit_compile="auto", **kwargs):
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        # XLA for one replica's step, never for the cross-device program (item 1). A TPU
        # compiles everything with XLA anyway.
        strategy = self.distribute_strategy
        self._compile_per_replica = bool(
            self.jit_compile
            and strategy.num_replicas_in_sync > 1
            and not isinstance(strategy, tf.distribute.TPUStrategy)
        )
        if self._compile_per_replica:
            self.jit_compile = False
        # The step hands the optimizer all-reduced gradients (item 3).
        for optimizer in (self.optimizer, getattr(self.optimizer, "inner_optimizer", None)):
            if optimizer is not None:
                optimizer._all_reduce_sum_gradients = _already_summed
        self._replica_step = (
            tf.function(self._gradients_and_metrics, jit_compile=True, reduce_retracing=True)
            if self._compile_per_replica
            else self._gradients_and_metrics
        )

    def _gradients_and_metrics(self, x, y, sample_weight, real_tokens):
        """Forward pass, loss, gradients and metric updates of one replica's batch;
        `real_tokens`: the global batch's real target tokens."""
        with _given_global_real_tokens(real_tokens), tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        # Each replica's loss is its share of the global loss: the mean over replicas
        # of share * replicas is the global loss, whatever the batch sizes (item 2).
        self._loss_tracker.update_state(unscale_loss_for_distribution(loss))
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        return gradients

    def train_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        gradients = _sum_over_replicas(
            self._replica_step(x, y, sample_weight, global_real_tokens(y))
        )
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._with_batch_axis(self.get_metrics_result())

    def test_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        self._loss_tracker.update_state(unscale_loss_for_distribution(loss))
        return self._with_batch_axis(self.compute_metrics(x, y, y_pred, sample_weight))

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
        # trainer's MEAN over axis 0 return them unchanged (item 4).
        if not self._is_multi_worker():
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}
