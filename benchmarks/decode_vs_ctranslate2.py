"""Our Translator against CTranslate2 on the same weights and the same sentences.

    python benchmarks/decode_vs_ctranslate2.py --model RUN --src FILE [--ref FILE] [--beam-size 4]

The run is converted to CTranslate2 (`tf-transformer export --format ctranslate2`) in
float32 and in int8 into a temporary directory. Each engine first translates every
sentence once untimed (ours compiles its search shapes, CTranslate2 warms up); then
--rounds rounds, the engines taking turns in each, time a whole pass over the sentences
(tokenization and detokenization included). Each CTranslate2 model runs in a child process
of its own. Both search with --beam-size beams, the
run's length penalty (CTranslate2 divides by L ** alpha, ours by ((5 + L) / 6) ** alpha)
and batches of --batch-size sentences, CTranslate2 on --threads threads. CTranslate2's
output limit is ours for the longest source of the file; each of its sentences stops at
EOS. Prints one JSON object on the last line: per engine the median sentences/s and
target tokens/s with every round's figure, BLEU (with --ref), and our speed over each
CTranslate2 row's (the median of the rounds' ratios).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import statistics
import tempfile
import time

import ctranslate2
import sentencepiece
import tensorflow as tf
from decode_rounds import add_arguments, alternating_rounds, speed_row, timed

from tf_transformer.config import load_run
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.decoding.translator import Translator, read_lines
from tf_transformer.evaluation.metrics import corpus_scores
from tf_transformer.serving.ctranslate2_export import ctranslate2_translate, export_ctranslate2


def _ctranslate2_worker(
    connection, quantization: str, model_dir: str, model_proto: bytes, threads: int, options
) -> None:
    """Child process: translates each list of sentences received with the CTranslate2
    model in `model_dir` and sends back (translations, seconds); None ends it."""
    processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    translator = ctranslate2.Translator(
        model_dir, device="cpu", compute_type=quantization, intra_threads=threads
    )
    while (sentences := connection.recv()) is not None:
        started = time.perf_counter()
        texts = ctranslate2_translate(translator, processor, sentences, **options)
        connection.send((texts, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, batch_size=32)
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 intra_threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    experiment = load_run(args.model)
    decode_config = dataclasses.replace(
        experiment.decode, beam_size=args.beam_size, batch_size=args.batch_size
    )
    translator = Translator.from_run(args.model, decode_config)
    sentences = read_lines(args.src)[: args.limit]
    references = read_lines(args.ref)[: args.limit] if args.ref else None
    longest = int(tf.reduce_max(translator.source_ids(sentences)[1]))
    max_length = translator.output_length(longest)
    model_proto = tf.io.gfile.GFile(vocabulary_paths(translator.data_config)[0], "rb").read()
    processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    options = dict(
        max_length=max_length,
        source_max_length=translator.model_max_length,
        beam_size=args.beam_size,
        length_penalty=decode_config.length_penalty,
        batch_size=args.batch_size,
    )

    with tempfile.TemporaryDirectory() as scratch:
        model_dirs = {
            quantization: export_ctranslate2(args.model, f"{scratch}/{quantization}", quantization)
            for quantization in ("float32", "int8")
        }
        # Each CTranslate2 model runs alone in a child process: two translators in one
        # process (or one beside TensorFlow's thread pools) ran 2-3 times slower.
        spawn = multiprocessing.get_context("spawn")
        connections, workers = {}, []
        for quantization, model_dir in model_dirs.items():
            connections[quantization], child_connection = spawn.Pipe()
            workers.append(
                spawn.Process(
                    target=_ctranslate2_worker,
                    args=(
                        child_connection,
                        quantization,
                        model_dir,
                        model_proto,
                        args.threads,
                        options,
                    ),
                )
            )
            workers[-1].start()

        def timed_ctranslate2(batch, quantization):
            connections[quantization].send(batch)
            return connections[quantization].recv()  # (translations, child's seconds)

        engines = {
            "ours": timed(translator.translate),
            "ctranslate2_float32": lambda batch: timed_ctranslate2(batch, "float32"),
            "ctranslate2_int8": lambda batch: timed_ctranslate2(batch, "int8"),
        }
        translations, seconds = alternating_rounds(engines, sentences, args.rounds)
        for connection, worker in zip(connections.values(), workers, strict=True):
            connection.send(None)
            worker.join()

    results: dict[str, object] = {
        "model": args.model,
        "sentences": len(sentences),
        "beam_size": args.beam_size,
        "length_penalty": decode_config.length_penalty,
        "batch_size": args.batch_size,
        "max_decoding_length": max_length,
        "threads": args.threads,
    }
    for name, texts in translations.items():
        target_tokens = sum(len(processor.encode(text)) + 1 for text in texts)  # + EOS
        row = {
            **speed_row(len(sentences), seconds[name]),
            "target_tokens_per_s": round(
                statistics.median(target_tokens / s for s in seconds[name]), 1
            ),
            "mean_target_tokens": round(target_tokens / len(sentences), 2),
        }
        if references is not None:
            scores = corpus_scores(texts, references)
            row.update(bleu=round(scores["bleu"], 2), chrf=round(scores["chrf"], 2))
        results[name] = row
    for name in engines:
        if name != "ours":
            results[f"ours_over_{name}"] = round(
                statistics.median(
                    theirs / ours
                    for ours, theirs in zip(seconds["ours"], seconds[name], strict=True)
                ),
                3,
            )
    results["identical_to_ctranslate2_float32"] = sum(
        a == b
        for a, b in zip(translations["ours"], translations["ctranslate2_float32"], strict=True)
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
