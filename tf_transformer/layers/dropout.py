"""`keras.layers.Dropout` with masks that are cheap to draw under XLA on CPU.

Why not the stock layer as it is: it draws its mask with TensorFlow's default stateless
algorithm, which XLA lowers to Philox, and XLA's CPU backend generates Philox bits
slowly: the 17 dropout masks of a d_model-256 training step took 12% of the step
(TensorBoard profile of `benchmark train`). Here, under XLA, each mask comes from
ThreeFry (XLA's other counter-based generator, JAX's default), and each 32-bit random
word decides two elements with 16 bits apiece: the masks took 33 ms of the step's
thread time with one word per element instead of 129 ms with Philox, and about half
that with two elements per word. TensorFlow has no ThreeFry kernel outside XLA, so
uncompiled code keeps the stock path.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # no public equivalent

# Each element is dropped when its 16 random bits fall below round(rate * 2**16).
_ELEMENT_BITS = 16


def in_xla_compilation() -> bool:
    """Whether the code being traced will be compiled by XLA (jit_compile=True)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def half_word_dropout(inputs, rate: float, seed):
    """`inputs` with elements zeroed at `rate` (to 1 / 2**16) and the rest scaled so
    the expectation is unchanged; one ThreeFry 32-bit word decides two elements."""
    size = tf.size(inputs)
    words = tf.random.stateless_uniform(
        [(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32, alg="threefry"
    )
    low_bits = tf.bitwise.bitwise_and(words, 0xFFFF)
    high_bits = tf.bitwise.right_shift(words, _ELEMENT_BITS)
    element_bits = tf.reshape(tf.concat([low_bits, high_bits], 0)[:size], tf.shape(inputs))
    dropped_below = round(rate * 2**_ELEMENT_BITS)
    keep_probability = 1.0 - dropped_below / 2**_ELEMENT_BITS
    kept = tf.greater_equal(element_bits, dropped_below)
    return tf.where(kept, inputs / tf.cast(keep_probability, inputs.dtype), 0)


@keras.saving.register_keras_serializable(package="tf_transformer")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` (same arguments and seeding) that draws cheap ThreeFry
    masks when XLA compiles it.

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
        return half_word_dropout(inputs, self.rate, seed)
