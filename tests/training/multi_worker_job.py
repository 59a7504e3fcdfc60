"""One worker of the two-worker MultiWorkerMirroredStrategy test (run as a script).

Usage: python multi_worker_job.py TF_CONFIG_JSON RUN_DIR EXPORT_DIR. Runs `train` on a
tiny synthetic corpus with the default XLA setting and prints one JSON line: the loss
history and a checksum of the final weights.
"""

import json
import os
import sys

os.environ["TF_CONFIG"] = sys.argv[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tf_transformer import config  # noqa: E402
from tf_transformer.models import Seq2SeqTransformer  # noqa: E402
from tf_transformer.tasks.translation import train  # noqa: E402

experiment = config.load(
    overrides=[
        "model.d_model=32",
        "model.ffn_dim=64",
        "model.num_encoder_layers=1",
        "model.num_decoder_layers=1",
        "model.max_length=64",
        "data.synthetic_train_size=200",
        "data.synthetic_eval_size=8",
        "data.vocab_size=150",
        "data.batch_tokens=1024",
        "train.steps=6",
        "train.eval_every=3",
        "train.backup_every=2",
        "train.average_last=2",
        "train.warmup_steps=2",
        "train.bleu_sentences=4",
        "train.strategy=multi_worker",
    ]
)
assert experiment.train.jit_compile

# The model `train` fits, to checksum its weights on every worker (only the chief saves).
trained = []
original_fit = Seq2SeqTransformer.fit


def recording_fit(model, *args, **kwargs):
    trained.append(model)
    return original_fit(model, *args, **kwargs)


Seq2SeqTransformer.fit = recording_fit
metrics = train(experiment, sys.argv[2], export_path=sys.argv[3])
checksum = float(sum(np.abs(weight).sum() for weight in trained[0].get_weights()))
print(json.dumps({"losses": metrics["history"]["loss"], "checksum": checksum}))
