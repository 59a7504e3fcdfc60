"""SavedModel export: strings in, strings out, loadable without this package.

The graph holds the SentencePiece tokenizers (tensorflow-text ops), the encoder, the
cached decoder and the search, all plain TensorFlow and tensorflow-text ops, so TF
Serving, Vertex AI or `tf.saved_model.load` with tensorflow_text imported can run it.
Preprocessing and postprocessing are the Python `Translator`'s own functions
(`source_token_ids`, `output_length`, `detokenize`), so both give the same translations.

Signatures (inputs: `inputs`, tf.string ``[batch]``):
    serving_default: `outputs` ``[batch]`` string, `scores` ``[batch]`` float32.
    translate_nbest: `outputs` ``[batch, beam_size]``, `scores` ``[batch, beam_size]``.
    sample: also `temperature` (float32), `top_k` (int32, 0: no limit) and `top_p`
        (float32, 1.0: no limit) scalars; `outputs` / `scores` ``[batch, num_samples]``.
        Every call restarts from the export's seed, so equal calls give equal samples.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import keras_hub
import tensorflow as tf

from tf_transformer.config import DecodeConfig
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.decoding.search import search
from tf_transformer.decoding.translator import (
    Translator,
    blank_sentences,
    detokenize,
    output_length,
    source_token_ids,
)

SIGNATURES = ("serving_default", "translate_nbest", "sample")


class _TranslationGraph:
    """The functions behind the signatures, for one model, its tokenizers and a decode
    config. Blank inputs skip the model and come out as "" with score 0, as in
    `Translator`."""

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        decode_config: DecodeConfig,
        num_samples: int,
    ):
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.best_config = dataclasses.replace(decode_config, sample=False, num_return_sequences=1)
        self.nbest_config = dataclasses.replace(
            self.best_config, num_return_sequences=decode_config.beam_size
        )
        self.sample_config = dataclasses.replace(
            decode_config, sample=True, beam_size=1, num_return_sequences=num_samples
        )
        # keras_hub samplers take temperature, p and k as Python numbers when built; the
        # sample signature takes them per call, so `sample` sets them on this sampler
        # (as tensors) while it is traced. Its seed state is a variable of the export.
        self.sampler = keras_hub.samplers.TopPSampler(p=1.0, seed=decode_config.seed)

    def translate(self, inputs, decode_config: DecodeConfig, sampler=None):
        """``[B]`` strings -> (``[B, N]`` strings, ``[B, N]`` float32 scores)."""
        count = decode_config.num_return_sequences
        non_blank = tf.where(tf.logical_not(blank_sentences(inputs)))[:, 0]  # [M]
        source_ids, _ = source_token_ids(
            self.source_tokenizer, tf.gather(inputs, non_blank), self.model.config.max_length
        )
        max_length = output_length(
            decode_config, tf.shape(source_ids)[1], self.model.config.max_length
        )
        result = search(self.model, source_ids, decode_config, max_length, sampler=sampler)
        texts = detokenize(self.target_tokenizer, result.sequences)  # [M, N]
        # Row M of the padded results is the blank answer; blank inputs point at it.
        texts = tf.concat([texts, tf.fill([1, count], "")], axis=0)
        scores = tf.concat([result.scores, tf.zeros([1, count])], axis=0)
        rows = tf.tensor_scatter_nd_update(
            tf.fill(tf.shape(inputs, out_type=tf.int64), tf.shape(non_blank, tf.int64)[0]),
            non_blank[:, None],
            tf.range(tf.shape(non_blank, tf.int64)[0]),
        )  # [B]
        return tf.gather(texts, rows), tf.gather(scores, rows)

    def serving_default(self, inputs):
        texts, scores = self.translate(inputs, self.best_config)
        return {"outputs": texts[:, 0], "scores": scores[:, 0]}

    def translate_nbest(self, inputs):
        texts, scores = self.translate(inputs, self.nbest_config)
        return {"outputs": texts, "scores": scores}

    def sample(self, inputs, temperature, top_k, top_p):
        vocab_size = self.model.config.target_vocab_size
        self.sampler.temperature = temperature
        self.sampler.p = top_p
        self.sampler.k = tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
        texts, scores = self.translate(inputs, self.sample_config, sampler=self.sampler)
        return {"outputs": texts, "scores": scores}


def export_translator(
    model,
    source_tokenizer,
    target_tokenizer,
    decode_config: DecodeConfig,
    vocabulary_files: list[str | Path],
    output_dir: str | Path,
    num_samples: int = 1,
) -> str:
    """Writes the SavedModel to the next version directory OUTPUT_DIR/N (1, 2, ...: the
    layout TF Serving watches; local or gs://) and returns that directory.

    The graph needs no file: tensorflow-text's SentencePiece op holds the model proto
    as an attribute. The SentencePiece files also go into assets/, for clients that
    tokenize on their side. (ExportArchive keeps only TrackableResources of what it
    tracks, so a `tf.saved_model.Asset` would not be written.)"""
    output_dir = str(output_dir).rstrip("/")  # a local or a gs:// path
    names = tf.io.gfile.listdir(output_dir) if tf.io.gfile.isdir(output_dir) else []
    versions = [int(name.rstrip("/")) for name in names if name.rstrip("/").isdigit()]
    version_dir = f"{output_dir}/{max(versions, default=0) + 1}"
    graph = _TranslationGraph(model, source_tokenizer, target_tokenizer, decode_config, num_samples)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for tokenizer in {id(t): t for t in (source_tokenizer, target_tokenizer)}.values():
        archive.track(tokenizer)
    strings = tf.TensorSpec([None], tf.string, name="inputs")
    archive.add_endpoint("serving_default", graph.serving_default, input_signature=[strings])
    archive.add_endpoint("translate_nbest", graph.translate_nbest, input_signature=[strings])
    archive.add_endpoint(
        "sample",
        graph.sample,
        input_signature=[
            strings,
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
        ],
    )
    archive.add_variable_collection("sampler_state", [graph.sampler.seed_generator.state])
    try:
        archive.write_out(version_dir, verbose=False)
        for path in dict.fromkeys(map(Path, vocabulary_files)):
            tf.io.gfile.copy(str(path), f"{version_dir}/assets/{path.name}")
    except BaseException:
        if tf.io.gfile.exists(version_dir):  # no half-written version for TF Serving
            tf.io.gfile.rmtree(version_dir)
        raise
    return version_dir


def export_run(
    run_dir: str | Path,
    output_dir: str | Path,
    decode_config: DecodeConfig | None = None,
    num_samples: int = 1,
) -> str:
    """Exports a training run (its model.keras and vocabulary) with `decode_config`
    (default: the run's `decode` section) and `num_samples` samples per sentence in the
    sample signature; returns the version directory."""
    started = time.perf_counter()
    translator = Translator.from_run(run_dir, decode_config, jit_compile=False)
    version_dir = export_translator(
        translator.model,
        translator.source_tokenizer,
        translator.target_tokenizer,
        translator.decode_config,
        list(vocabulary_paths(translator.data_config)),
        output_dir,
        num_samples,
    )
    print(f"Exported {run_dir} to {version_dir} in {time.perf_counter() - started:.0f} s")
    return version_dir
