"""The accelerator check, in one command: train, decode and export as a user would on a
GPU machine, and print one JSON line.

    python benchmarks/gpu_check.py [--config FILE] [--set KEY=VALUE ...] [--output-dir DIR]

1. `train` with the config's `precision: auto` (mixed_float16 with loss scaling on a
   GPU) and `jit_compile` (XLA), under `strategy: auto` (MirroredStrategy when there are
   several GPUs), exporting the SavedModel: loss first/last, test BLEU, wall time.
2. Training throughput at the config's model shape on one fixed-shape batch (the
   `benchmark train` measurement): tokens/s and MFU, the matmul FLOP rate over the
   GPU's dense float16/bfloat16 peak (table below; null where the device is unknown).
3. Greedy decoding of the test split with XLA from the run directory: sentences/s.

On a CPU it runs too (MFU null), which is how its test checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import keras
import tensorflow as tf

from tf_transformer import config
from tf_transformer.config import DecodeConfig
from tf_transformer.data import sources
from tf_transformer.decoding.benchmark import benchmark_decode
from tf_transformer.tasks.translation import train
from tf_transformer.training.benchmark import benchmark_train

# Dense float16/bfloat16 tensor-core peaks, TFLOP/s (vendor data sheets, no sparsity).
PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "V100": 125.0,
    "T4": 65.0,
}
THROUGHPUT_BATCH_SIZE = 64
THROUGHPUT_LENGTH = 32


def gpu_name_and_peak() -> tuple[str | None, float | None]:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None, None
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    peaks = [peak for key, peak in PEAK_TFLOPS.items() if key in name]
    return name, peaks[0] if peaks else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], help="KEY=VALUE")
    parser.add_argument("--output-dir", default="runs/gpu_check")
    parser.add_argument("--throughput-steps", type=int, default=50)
    args = parser.parse_args(argv)
    experiment = config.load(args.config, args.set)

    metrics = train(
        experiment, args.output_dir, export_path=config.join_path(args.output_dir, "export")
    )
    run_config = config.load_run(args.output_dir)
    throughput = benchmark_train(
        run_config.model,
        THROUGHPUT_BATCH_SIZE,
        THROUGHPUT_LENGTH,
        THROUGHPUT_LENGTH,
        steps=args.throughput_steps,
        train_config=run_config.train,
    )
    test_pairs = sources.load_pairs(run_config.data, "test").as_numpy_iterator()
    test_sources = [source.decode() for source, _ in test_pairs]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as source_file:
        source_file.write("\n".join(test_sources) + "\n")
    try:
        decoding = benchmark_decode(args.output_dir, source_file.name, DecodeConfig())
    finally:
        os.remove(source_file.name)

    gpu, peak_tflops = gpu_name_and_peak()
    losses = metrics["history"]["loss"]
    result = {
        "gpu": gpu,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "precision": keras.config.dtype_policy().name,
        "train_steps": metrics["steps"],
        "train_wall_time_s": metrics["wall_time_s"],
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "test_bleu": round(metrics["bleu"], 2),
        "saved_model": metrics["saved_model"],
        "train_tokens_per_s": throughput["tokens_per_s"],
        "train_tflops_per_s": round(throughput["gflops_per_s"] / 1000, 3),
        "peak_tflops": peak_tflops,
        "mfu": round(throughput["gflops_per_s"] / 1000 / peak_tflops, 4) if peak_tflops else None,
        "greedy_sentences_per_s": decoding["sentences_per_s"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
