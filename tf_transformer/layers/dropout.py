"""`keras.layers.Dropout` with masks that are cheap to draw under XLA on CPU.

Why not the stock layer as it is: it draws each mask with TensorFlow's stateless
generator, which XLA lowers to Philox, and XLA's CPU backend generates those bits
slowly, in separate passes that write them out (a tenth of a d_model-256 training step
in a TensorBoard profile; figures in BENCHMARKS.md, "Measurements behind the code"). Here, under
XLA, each element's random word is a keyed integer hash of its position, a dozen integer
operations that XLA fuses into the pass applying the mask, so no bits are stored and
the generator passes are gone from the profile. The key comes from Keras's seed
generator, so seeding and per-call freshness are as in the stock layer. Uncompiled code
keeps the stock path.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # no public equivalent


def in_xla_compilation() -> bool:
    """Whether the code being traced will be compiled by XLA (jit_compile=True)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _mix(words):
    """lowbias32 (C. Wellons, "Hash Prospector"): a bijective 32-bit integer hash whose
    output bits each flip with probability ~1/2 when any input bit flips."""
    words = tf.bitwise.bitwise_xor(words, tf.bitwise.right_shift(words, 16))
    words = words * tf.constant(0x7FEB352D, tf.uint32)
    words = tf.bitwise.bitwise_xor(words, tf.bitwise.right_shift(words, 15))
    words = words * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(words, tf.bitwise.right_shift(words, 16))


def hashed_dropout(inputs, rate: float, seed):
    """`inputs` with elements zeroed at `rate` and the rest scaled by 1 / (1 - rate):
    element i is dropped when ``mix(mix(i ^ key0) + key1)`` falls below rate * 2**32,
    with the two 32-bit key words taken from the int32 pair `seed`."""
    key = tf.bitcast(seed, tf.uint32)
    positions = tf.reshape(tf.range(tf.size(inputs)), tf.shape(inputs))
    words = _mix(_mix(tf.bitwise.bitwise_xor(tf.bitcast(positions, tf.uint32), key[0])) + key[1])
    dropped_below = min(round(rate * 2**32), 2**32 - 1)
    keep_probability = 1.0 - dropped_below / 2**32
    kept = tf.greater_equal(words, tf.constant(dropped_below, tf.uint32))
    return tf.where(kept, inputs / tf.cast(keep_probability, inputs.dtype), 0)


@keras.saving.register_keras_serializable(package="tf_transformer")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` (same arguments and seeding) that draws hashed masks
    when XLA compiles it.

    Example:
    ```python
    Dropout(0.1)(np.ones((2, 3)), training=True)  # zeros, or ones scaled by 1 / 0.9
    ```
    """

    def call(self, inputs, training=False):
        if not (training and self.rate > 0) or self.noise_shape or not in_xla_compilation():
            return super().call(inputs, training=training)
        # Keras's seeds are int64 state; the key is their int32 words.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        return hashed_dropout(inputs, self.rate, seed)
