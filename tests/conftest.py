"""Shared test setup: quiet logs, two logical CPU devices, deterministic weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs let tests run MirroredStrategy with two replicas (as OpenNMT-tf
# does); this must happen before TensorFlow initialises its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture(autouse=True)
def _seeded_float32():
    """Each test starts from the same seed under the float32 policy."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def two_cpu_strategy():
    # One instance per process: separate MirroredStrategy instances can hand out
    # clashing collective instance keys.
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
