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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory with a 1+1-layer model trained for 10 steps on the synthetic corpus."""
    from tf_transformer import config as config_lib
    from tf_transformer.tasks.translation import train

    directory = tmp_path_factory.mktemp("run")
    experiment = config_lib.load(
        overrides=[
            "model.d_model=32",
            "model.ffn_dim=64",
            "model.num_encoder_layers=1",
            "model.num_decoder_layers=1",
            "model.max_length=32",
            "data.synthetic_train_size=300",
            "data.synthetic_eval_size=10",
            "data.vocab_size=200",
            "data.max_length=32",
            "data.batch_tokens=512",
            "train.steps=10",
            "train.eval_every=10",
            "train.bleu_sentences=4",
            "train.jit_compile=false",
        ]
    )
    train(experiment, directory)
    return directory


TINY_LANGUAGE_MODEL = [
    "task=language_model",
    "model.d_model=32",
    "model.ffn_dim=64",
    "model.num_layers=1",
    "model.max_length=40",
    "model.dropout=0.0",
    "data.synthetic_train_size=300",
    "data.synthetic_eval_size=10",
    "data.vocab_size=200",
    "data.max_length=32",
    "data.batch_tokens=256",
    "train.steps=30",
    "train.eval_every=30",
    "train.label_smoothing=0.0",
    "train.jit_compile=false",
]


@pytest.fixture(scope="session")
def tiny_lm_run(tmp_path_factory):
    """A run directory with a 1-layer language model trained for 30 steps on the English
    side of the synthetic corpus."""
    from tf_transformer import config as config_lib
    from tf_transformer.tasks.language_model import train

    directory = tmp_path_factory.mktemp("lm_run")
    train(config_lib.load(overrides=TINY_LANGUAGE_MODEL), directory)
    return directory
