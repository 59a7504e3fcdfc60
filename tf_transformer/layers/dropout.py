"""`keras.layers.Dropout` with a random-number algorithm that is fast under XLA on CPU.

Why not the stock layer as it is: it draws its mask with TensorFlow's default stateless
algorithm, which XLA lowers to Philox, and XLA's CPU backend generates Philox bits
slowly: the 17 dropout masks of a d_model-256 training step took 12% of the step
(TensorBoard profile of `benchmark train`). With ThreeFry, XLA's other counter-based
generator (JAX's default), the masks took 33 instead of 129 ms of the step's thread
time. TensorFlow has no ThreeFry kernel outside XLA, so uncompiled code keeps the
stock path.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # no public equivalent


def in_xla_compilation() -> bool:
    """Whether the code being traced will be compiled by XLA (jit_compile=True)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


@keras.saving.register_keras_serializable(package="tf_transformer")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` (same arguments and seeding) that draws ThreeFry masks
    when XLA compiles it.

    Example:
    ```python
    Dropout(0.1)(np.ones((2, 3)), training=True)  # zeros, or ones scaled by 1 / 0.9
    ```
    """

    def call(self, inputs, training=False):
        if not (training and self.rate > 0) or self.noise_shape or not in_xla_compilation():
            return super().call(inputs, training=training)
        # Keras's seeds are int64 state; stateless ops under XLA need int32.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        return tf.nn.experimental.stateless_dropout(
            inputs, self.rate, seed=seed, rng_alg="threefry"
        )
