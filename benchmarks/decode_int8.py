"""Our Translator in float32 and with Keras int8 weights, on the same run and sentences.

    python benchmarks/decode_int8.py --model RUN --src FILE [--ref FILE] [--beam-size 4]

The int8 model is the run's model after `model.quantize("int8")`: Keras's per-channel
int8 weights and dynamically quantized activations in every Dense layer and in the
(tied) embedding's output projection. Both translators search with XLA (--beam-size
beams, the run's length penalty, batches of --batch-size). Each translates every
sentence once untimed (compiling its shapes); then --rounds rounds, the two taking
turns, time a whole pass. Prints one JSON object on the last line: per model the median
sentences/s with every round's figure and BLEU (with --ref), the int8 speed over the
float32 one (median of the rounds' ratios) and how many translations are identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from decode_rounds import add_arguments, alternating_rounds, speed_row, timed

from tf_transformer.config import load_run
from tf_transformer.decoding.translator import Translator, read_lines
from tf_transformer.evaluation.metrics import corpus_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, batch_size=64)
    args = parser.parse_args()

    decode_config = dataclasses.replace(
        load_run(args.model).decode, beam_size=args.beam_size, batch_size=args.batch_size
    )
    sentences = read_lines(args.src)[: args.limit]
    references = read_lines(args.ref)[: args.limit] if args.ref else None
    translators = {"float32": Translator.from_run(args.model, decode_config)}
    quantized = Translator.from_run(args.model, decode_config)
    quantized.model.quantize("int8")
    translators["int8"] = quantized

    translations, seconds = alternating_rounds(
        {name: timed(t.translate) for name, t in translators.items()}, sentences, args.rounds
    )

    results: dict[str, object] = {
        "model": args.model,
        "sentences": len(sentences),
        "beam_size": args.beam_size,
        "batch_size": args.batch_size,
    }
    for name, texts in translations.items():
        row = speed_row(len(sentences), seconds[name])
        if references is not None:
            row["bleu"] = round(corpus_scores(texts, references)["bleu"], 2)
        results[name] = row
    results["int8_over_float32"] = round(
        statistics.median(f / q for f, q in zip(seconds["float32"], seconds["int8"], strict=True)),
        3,
    )
    results["identical"] = sum(
        a == b for a, b in zip(translations["float32"], translations["int8"], strict=True)
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
