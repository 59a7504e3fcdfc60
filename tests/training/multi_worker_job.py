"""One worker of the two-worker MultiWorkerMirroredStrategy test (run as a script).

Usage: python multi_worker_job.py TF_CONFIG_JSON. Prints one JSON line: the losses
and a checksum of the final weights.
"""

import json
import os
import sys

os.environ["TF_CONFIG"] = sys.argv[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_transformer.config import ModelConfig, TrainConfig  # noqa: E402
from tf_transformer.models import Seq2SeqTransformer  # noqa: E402
from tf_transformer.training.fit import compile_for_training  # noqa: E402
from tf_transformer.training.strategy import select_strategy  # noqa: E402

strategy = select_strategy("auto")
assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), type(strategy)
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
sources = rng.integers(4, 30, (16, 6)).astype("int32")
targets = rng.integers(4, 30, (16, 5)).astype("int32")
decoder_inputs = np.concatenate([np.full((16, 1), 2, "int32"), targets[:, :-1]], axis=1)


def dataset_fn(context):
    examples = tf.data.Dataset.from_tensor_slices(
        ({"encoder_inputs": sources, "decoder_inputs": decoder_inputs}, targets)
    )
    shard = examples.shard(context.num_input_pipelines, context.input_pipeline_id)
    return shard.batch(4).repeat()


with strategy.scope():
    model = Seq2SeqTransformer(
        ModelConfig.preset(
            "tiny", source_vocab_size=30, target_vocab_size=30, d_model=32, ffn_dim=64
        )
    )
    model.build()
    compile_for_training(model, TrainConfig(jit_compile=False, warmup_steps=2))
history = model.fit(
    strategy.distribute_datasets_from_function(dataset_fn),
    epochs=2,
    steps_per_epoch=3,
    verbose=0,
)
checksum = float(sum(np.abs(weight).sum() for weight in model.get_weights()))
print(json.dumps({"losses": history.history["loss"], "checksum": checksum}))
