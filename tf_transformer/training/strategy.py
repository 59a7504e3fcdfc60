"""Picks the tf.distribute strategy for the hardware at hand."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from tf_transformer.config import STRATEGY_CHOICES

logger = logging.getLogger(__name__)


def _tpu_address() -> str:
    """ "" lets TPUClusterResolver find a configured TPU (TPU_NAME, Colab's
    COLAB_TPU_ADDR); a TPU VM with its TPU attached and no such variable needs "local"."""
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
        return ""
    return "local" if tf.config.list_physical_devices("TPU") else ""


def _tpu_strategy():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=_tpu_address())
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def tpu_available() -> bool:
    """True on a Colab/Cloud TPU VM or where a TPU address is configured.

    Looks only at the environment and physical devices: initialising TensorFlow's
    context here would make a later MultiWorkerMirroredStrategy fail.
    """
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        return True
    return bool(tf.config.list_physical_devices("TPU"))


def _multi_worker_configured() -> bool:
    return bool(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster"))


def select_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The strategy for `kind`; "auto" tries, in order: several workers (TF_CONFIG
    names a cluster), a TPU (TPUClusterResolver), several GPUs (MirroredStrategy),
    else the default single-device strategy. Call it before any other TensorFlow
    work: multi-worker collectives must be configured at program start."""
    if kind not in STRATEGY_CHOICES:
        raise ValueError(f"strategy must be one of {STRATEGY_CHOICES}, got {kind!r}")
    if kind == "multi_worker" or (kind == "auto" and _multi_worker_configured()):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "tpu" or (kind == "auto" and tpu_available()):
        strategy = _tpu_strategy()
    elif kind == "mirrored" or (kind == "auto" and len(tf.config.list_physical_devices("GPU")) > 1):
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logger.info(
        "Using %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync
    )
    return strategy
