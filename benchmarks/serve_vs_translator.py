"""The exported SavedModel against the Python Translator, on the same sentences.

    python benchmarks/serve_vs_translator.py --model RUN --saved-model EXPORT/1 --src FILE
        [--beam-size 4] [--batch-size 32]

The SavedModel (exported from RUN at --beam-size, e.g. with `export --xla`) gets the
sentences as requests of --batch-size sentences, one `serving_default` call each. The
Translator (the run's model, the same beam size and batch size, XLA) translates them
twice: the same requests, one `translate` call each, and the whole file in one call,
where it reads 16 batches ahead and sorts them by source length, which a server given
requests one at a time cannot. Each translates everything once untimed (compiling its
shapes), then --rounds rounds take turns. Prints one JSON object on the last line:
median sentences/s of the three (every round's figure too), the SavedModel's over each
Translator figure, and on how many sentences its output equals the Translator's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops of the SavedModel)
from decode_rounds import add_arguments, alternating_rounds, speed_row, timed

from tf_transformer.config import load_run
from tf_transformer.decoding.translator import Translator, read_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, batch_size=32)
    parser.add_argument("--saved-model", required=True, help="the export's version directory")
    args = parser.parse_args()

    decode_config = dataclasses.replace(
        load_run(args.model).decode, beam_size=args.beam_size, batch_size=args.batch_size
    )
    translator = Translator.from_run(args.model, decode_config)
    serve = tf.saved_model.load(args.saved_model).signatures["serving_default"]
    sentences = [line for line in read_lines(args.src)[: args.limit] if line.strip()]

    def requests(sentences):
        return [
            sentences[start : start + args.batch_size]
            for start in range(0, len(sentences), args.batch_size)
        ]

    def saved_model(sentences):
        return [
            text.decode("utf-8")
            for request in requests(sentences)
            for text in serve(inputs=tf.constant(request))["outputs"].numpy()
        ]

    def translator_per_request(sentences):
        return [text for request in requests(sentences) for text in translator.translate(request)]

    engines = {
        "saved_model": saved_model,
        "translator_per_request": translator_per_request,
        "translator_whole_file": translator.translate,
    }
    translations, seconds = alternating_rounds(
        {name: timed(engine) for name, engine in engines.items()}, sentences, args.rounds
    )
    results: dict[str, object] = {
        "model": args.model,
        "saved_model_dir": args.saved_model,
        "sentences": len(sentences),
        "beam_size": args.beam_size,
        "batch_size": args.batch_size,
    }
    for name in engines:
        results[name] = speed_row(len(sentences), seconds[name])
    for name in ("translator_per_request", "translator_whole_file"):
        results[f"saved_model_over_{name}"] = round(
            statistics.median(
                other / ours
                for ours, other in zip(seconds["saved_model"], seconds[name], strict=True)
            ),
            3,
        )
    results["identical_to_translator"] = sum(
        a == b
        for a, b in zip(
            translations["saved_model"], translations["translator_whole_file"], strict=True
        )
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
