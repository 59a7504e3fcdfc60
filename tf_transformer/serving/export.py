"""SavedModel export per task: strings in, strings out, loadable without this package.

The graph holds the SentencePiece tokenizers (tensorflow-text ops), the model, its
cache and the search, all plain TensorFlow and tensorflow-text ops, so TF Serving,
Vertex AI or `tf.saved_model.load` with tensorflow_text imported can run it.
Preprocessing and postprocessing are the Python front ends' own functions (the
`Translator`'s `source_token_ids`, `output_length`, `detokenize`; the `Generator`'s
`prompt_token_ids`, `new_token_budget`, `continuation_texts`), so both give the same
outputs.

Translation signatures (inputs: `inputs`, tf.string ``[batch]``):
    serving_default: `outputs` ``[batch]`` string, `scores` ``[batch]`` float32.
    translate_nbest: `outputs` ``[batch, beam_size]``, `scores` ``[batch, beam_size]``.
    sample: also `temperature` (float32), `top_k` (int32, 0: no limit) and `top_p`
        (float32, 1.0: no limit) scalars; `outputs` / `scores` ``[batch, num_samples]``.
        Draws from the export's seed (`--seed`).
    sample_with_seed: `sample` with a `seed` input (int64 scalar) per request. A
        signature's inputs cannot be optional, hence two signatures.
Language-model signatures: see `export_generator`; the classifier's: `export_classifier`.
Sampling is stateless (`decoding.sampling`): equal requests with equal seeds get equal
samples, concurrently too, and bad parameters fail with InvalidArgumentError naming them.

A request runs `decode.batch_size` inputs at a time (a loop inside the graph), so its
memory stays that of one batch whatever its size; the k-th batch samples from
`batch_seed(seed, k)`, as the Python `Translator` does.

With `jit_compile`, greedy and beam search (serving_default, translate_nbest) run
XLA-compiled inside the graph, a batch padded to a power of two of rows and its sources
to a multiple of `decoding.translator.LENGTH_QUANTUM` tokens, so requests fall into a
few shapes, each compiled on its first call. `tf.saved_model.load` runs it as is; TF
Serving only with its experimental `--xla_cpu_compilation_enabled=true` flag (off by
default, so the default export is plain TensorFlow). Sampling stays plain TensorFlow:
XLA draws other random numbers than TensorFlow's kernels.

The model is exported in float32 whatever its training precision (`float32_copy`), or
with `quantization="int8"` as Keras quantizes it (`model.quantize("int8")`: per-channel
int8 weights, activations quantized per call); BENCHMARKS.md has its speed and BLEU.
Each export is written to a temporary directory beside the versions and moved to the
next version number only when complete.
"""

from __future__ import annotations

import dataclasses
import uuid

import keras
import tensorflow as tf

from tf_transformer.config import DecodeConfig, base_name, join_path, load_run
from tf_transformer.constants import PAD
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.decoding.classifier import TextClassifier, text_probabilities
from tf_transformer.decoding.generator import (
    Generator,
    continuation_texts,
    new_token_budget,
    prompt_token_ids,
)
from tf_transformer.decoding.sampling import batch_seed, sampling_parameters
from tf_transformer.decoding.search import search
from tf_transformer.decoding.translator import (
    Translator,
    blank_sentences,
    detokenize,
    output_length,
    source_token_ids,
)
from tf_transformer.models.precision import float32_copy

SIGNATURES = ("serving_default", "translate_nbest", "sample", "sample_with_seed")
LANGUAGE_MODEL_SIGNATURES = ("serving_default", "generate")
# Written first, moved last: a watcher (TF Serving) that sees it sees a whole version.
SAVED_MODEL_FILE = "saved_model.pb"


def in_batches(inputs, batch_size: int, run_batch, count: int | None = None):
    """``run_batch(batch_number, inputs[k * batch_size:(k + 1) * batch_size])`` ->
    (``[b, N]`` strings, ``[b, N]`` float32) for each batch k of `inputs` ``[B]``, in a
    graph loop that holds one batch in memory at a time; the results concatenated. `count`:
    N when it is fixed (the signature then declares it)."""
    # At least one (empty) batch, so that the outputs have their shape.
    num_batches = tf.maximum((tf.shape(inputs)[0] + batch_size - 1) // batch_size, 1)

    def step(batch_number, texts, scores):
        batch = inputs[batch_number * batch_size : (batch_number + 1) * batch_size]
        batch_texts, batch_scores = run_batch(batch_number, batch)
        return (
            batch_number + 1,
            texts.write(batch_number, batch_texts),
            scores.write(batch_number, batch_scores),
        )

    def outputs(dtype):
        return tf.TensorArray(
            dtype, size=num_batches, element_shape=[None, count], infer_shape=False
        )

    _, texts, scores = tf.while_loop(
        lambda batch_number, *_: batch_number < num_batches,
        step,
        (tf.constant(0), outputs(tf.string), outputs(tf.float32)),
        parallel_iterations=1,  # one batch in memory at a time
    )
    return texts.concat(), scores.concat()


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
        jit_compile: bool = False,
    ):
        self.model = model
        self.jit_compile = jit_compile
        self._compiled_searches: dict[DecodeConfig, tf.types.experimental.GenericFunction] = {}
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.best_config = dataclasses.replace(decode_config, sample=False, num_return_sequences=1)
        self.nbest_config = dataclasses.replace(
            self.best_config, num_return_sequences=decode_config.beam_size
        )
        self.sample_config = dataclasses.replace(
            decode_config, sample=True, beam_size=1, num_return_sequences=num_samples
        )

    def translate(self, inputs, decode_config: DecodeConfig, sampling=None, seed=None):
        """``[B]`` strings -> (``[B, N]`` strings, ``[B, N]`` float32 scores), translated
        `decode_config.batch_size` inputs at a time, as the `Translator` batches them:
        blanks left out, sorted by source length for search (not for sampling); the
        k-th batch samples with `sampling` from `batch_seed(seed, k)`."""
        count = decode_config.num_return_sequences
        non_blank = tf.where(tf.logical_not(blank_sentences(inputs)))[:, 0]  # [M]
        if not decode_config.sample:
            _, lengths = source_token_ids(
                self.source_tokenizer, tf.gather(inputs, non_blank), self.model.config.max_length
            )
            non_blank = tf.gather(non_blank, tf.argsort(lengths, stable=True))

        def translate_batch(batch_number, batch):
            batch_sampling = None
            if sampling is not None:
                batch_sampling = sampling._replace(seed=batch_seed(seed, batch_number))
            return self._translate_batch(batch, decode_config, batch_sampling)

        texts, scores = in_batches(
            tf.gather(inputs, non_blank), decode_config.batch_size, translate_batch, count
        )  # [M, N]
        # Row M of the results is the blank answer; blank inputs point at it.
        texts = tf.concat([texts, tf.fill([1, count], "")], axis=0)
        scores = tf.concat([scores, tf.zeros([1, count])], axis=0)
        rows = tf.tensor_scatter_nd_update(
            tf.fill(tf.shape(inputs, out_type=tf.int64), tf.shape(non_blank, tf.int64)[0]),
            non_blank[:, None],
            tf.range(tf.shape(non_blank, tf.int64)[0]),
        )  # [B]
        return tf.gather(texts, rows), tf.gather(scores, rows)

    def _translate_batch(self, inputs, decode_config: DecodeConfig, sampling):
        model_max_length = self.model.config.max_length
        source_ids, lengths = source_token_ids(self.source_tokenizer, inputs, model_max_length)
        step_limits = output_length(
            decode_config, tf.minimum(lengths, model_max_length), model_max_length
        )  # [b]: each sentence's own
        if self.jit_compile and sampling is None:
            sequences, scores = self._compiled_search(decode_config, source_ids, step_limits)
        else:
            sequences, scores = self._search(decode_config, source_ids, step_limits, sampling)
        return detokenize(self.target_tokenizer, sequences), scores  # [b, N]

    def _search(self, decode_config: DecodeConfig, source_ids, step_limits, sampling=None):
        max_length = output_length(
            decode_config, tf.shape(source_ids)[1], self.model.config.max_length
        )  # from the padded length: a compile-time constant under XLA
        result = search(
            self.model,
            source_ids,
            decode_config,
            max_length,
            sampling=sampling,
            step_limit=step_limits,
        )
        return result.sequences, result.scores

    def _compiled_search(self, decode_config: DecodeConfig, source_ids, step_limits):
        """`_search` compiled with XLA on the batch padded to a power of two of rows
        (all-PAD rows, finished from the start), its results sliced back.

        Each batch size is its own branch, so the search is traced with a static batch
        dimension: beam search drops finished sentences from its batch only then."""
        if decode_config not in self._compiled_searches:
            self._compiled_searches[decode_config] = tf.function(
                lambda ids, limits: self._search(decode_config, ids, limits), jit_compile=True
            )
        compiled = self._compiled_searches[decode_config]
        rows = tf.shape(source_ids)[0]
        batch_size = decode_config.batch_size
        sizes = [2**k for k in range(batch_size.bit_length()) if 2**k < batch_size]
        sizes.append(batch_size)

        def padded_to(size: int):
            def search_padded():
                filler = size - rows
                ids = tf.pad(source_ids, [[0, filler], [0, 0]], constant_values=PAD)
                limits = tf.pad(step_limits, [[0, filler]], constant_values=1)
                return compiled(tf.ensure_shape(ids, [size, None]), tf.ensure_shape(limits, [size]))

            return search_padded

        sequences, scores = tf.switch_case(
            tf.searchsorted(tf.constant(sizes), rows[None])[0], [padded_to(s) for s in sizes]
        )
        return sequences[:rows], scores[:rows]

    def serving_default(self, inputs):
        texts, scores = self.translate(inputs, self.best_config)
        return {"outputs": texts[:, 0], "scores": scores[:, 0]}

    def translate_nbest(self, inputs):
        texts, scores = self.translate(inputs, self.nbest_config)
        return {"outputs": texts, "scores": scores}

    def sample(self, inputs, temperature, top_k, top_p):
        seed = tf.constant(self.sample_config.seed, tf.int64)
        return self.sample_with_seed(inputs, temperature, top_k, top_p, seed)

    def sample_with_seed(self, inputs, temperature, top_k, top_p, seed):
        # Checked here: bad values fail the call with a message naming them.
        sampling = sampling_parameters(temperature, top_k, top_p, seed=None)
        texts, scores = self.translate(inputs, self.sample_config, sampling, seed)
        return {"outputs": texts, "scores": scores}


def export_translator(
    model,
    source_tokenizer,
    target_tokenizer,
    decode_config: DecodeConfig,
    vocabulary_files: list[str],
    output_dir: str,
    num_samples: int = 1,
    jit_compile: bool = False,
) -> str:
    """Writes the translation SavedModel to the next version directory OUTPUT_DIR/N (1,
    2, ...: the layout TF Serving watches; a local path or any tf.io.gfile URL) and
    returns that directory (see `write_version`); `jit_compile`: XLA-compiled search."""
    model = float32_copy(model)
    graph = _TranslationGraph(
        model, source_tokenizer, target_tokenizer, decode_config, num_samples, jit_compile
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    for tokenizer in {id(t): t for t in (source_tokenizer, target_tokenizer)}.values():
        archive.track(tokenizer)
    strings = tf.TensorSpec([None], tf.string, name="inputs")
    sampling_inputs = [
        strings,
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"),
        tf.TensorSpec([], tf.float32, name="top_p"),
    ]
    archive.add_endpoint("serving_default", graph.serving_default, input_signature=[strings])
    archive.add_endpoint("translate_nbest", graph.translate_nbest, input_signature=[strings])
    archive.add_endpoint("sample", graph.sample, input_signature=sampling_inputs)
    archive.add_endpoint(
        "sample_with_seed",
        graph.sample_with_seed,
        input_signature=[*sampling_inputs, tf.TensorSpec([], tf.int64, name="seed")],
    )
    return write_version(archive, vocabulary_files, output_dir)


class _GenerationGraph:
    """The functions behind a language model's signatures: prompts in, each prompt
    followed by its continuation out (as `decoding.generator.Generator` returns them)."""

    def __init__(self, model, tokenizer, decode_config: DecodeConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.default_config = dataclasses.replace(decode_config, num_return_sequences=1)
        self.sample_config = dataclasses.replace(decode_config, sample=True, beam_size=1)

    def generate_texts(self, inputs, decode_config, sampling=None, seed=None, count=None):
        """``[B]`` prompts -> (``[B, N]`` texts, ``[B, N]`` scores), in batches."""

        def generate_batch(batch_number, prompts):
            prompt_ids, _ = prompt_token_ids(self.tokenizer, prompts, self.model.config.max_length)
            max_length = new_token_budget(
                decode_config, tf.shape(prompt_ids)[1], self.model.config.max_length
            )
            batch_sampling = None
            if decode_config.sample:
                batch_sampling = (
                    sampling
                    or sampling_parameters(
                        decode_config.temperature, decode_config.top_k, decode_config.top_p, None
                    )
                )._replace(seed=batch_seed(seed, batch_number))
            result = search(
                self.model,
                prompt_ids,
                decode_config,
                max_length,
                sampling=batch_sampling,
                num_samples=count,
            )
            texts = continuation_texts(self.tokenizer, prompt_ids, result.sequences)
            return texts, result.scores

        return in_batches(
            inputs,
            decode_config.batch_size,
            generate_batch,
            None if count is not None else decode_config.num_return_sequences,
        )

    def serving_default(self, inputs):
        seed = tf.constant(self.default_config.seed, tf.int64)
        texts, scores = self.generate_texts(inputs, self.default_config, seed=seed)
        return {"outputs": texts[:, 0], "scores": scores[:, 0]}

    def generate(self, inputs, temperature, top_k, top_p, num_return_sequences, seed):
        # Checked here: bad values fail the call with a message naming them.
        sampling = sampling_parameters(temperature, top_k, top_p, seed=None)
        with tf.control_dependencies(
            [
                tf.debugging.assert_positive(
                    num_return_sequences, message="num_return_sequences must be >= 1"
                )
            ]
        ):
            count = tf.identity(num_return_sequences)
        texts, scores = self.generate_texts(inputs, self.sample_config, sampling, seed, count)
        return {"outputs": texts, "scores": scores}


def export_generator(
    model, tokenizer, decode_config: DecodeConfig, vocabulary_files: list[str], output_dir: str
) -> str:
    """Writes a language model's SavedModel to the next version directory OUTPUT_DIR/N and
    returns it. Signatures (`inputs`: tf.string prompts ``[batch]``; outputs are each
    prompt followed by its continuation): serving_default (`decode_config`'s search or
    sampling, one output each: `outputs` ``[batch]``, `scores` ``[batch]``) and generate
    (sampling with `temperature` float32, `top_k` int32, `top_p` float32,
    `num_return_sequences` int32 and `seed` int64 scalars: `outputs` and `scores`
    ``[batch, num_return_sequences]``)."""
    model = float32_copy(model)
    graph = _GenerationGraph(model, tokenizer, decode_config)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)
    strings = tf.TensorSpec([None], tf.string, name="inputs")
    archive.add_endpoint("serving_default", graph.serving_default, input_signature=[strings])
    archive.add_endpoint(
        "generate",
        graph.generate,
        input_signature=[
            strings,
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int32, name="num_return_sequences"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ],
    )
    return write_version(archive, vocabulary_files, output_dir)


def write_version(archive, vocabulary_files: list[str], output_dir: str) -> str:
    """Writes `archive` to the next version directory OUTPUT_DIR/N and returns it.

    The model is exported in float32 whatever its training precision. The version is
    written to a temporary directory beside the versions (".tmp-export-...", which TF
    Serving ignores) and moved to the next free number only when complete; on an error
    only that temporary directory is removed.

    The graph needs no file: tensorflow-text's SentencePiece op holds the model proto
    as an attribute. The SentencePiece files also go into assets/, for clients that
    tokenize on their side. (ExportArchive keeps only TrackableResources of what it
    tracks, so a `tf.saved_model.Asset` would not be written.)"""
    output_dir = str(output_dir).rstrip("/")
    temporary_dir = join_path(output_dir, f".tmp-export-{uuid.uuid4().hex}")
    try:
        archive.write_out(temporary_dir, verbose=False)
        tf.io.gfile.makedirs(join_path(temporary_dir, "assets"))
        for path in dict.fromkeys(map(str, vocabulary_files)):
            tf.io.gfile.copy(path, join_path(temporary_dir, f"assets/{base_name(path)}"))
        return _publish(temporary_dir, output_dir)
    finally:
        if tf.io.gfile.exists(temporary_dir):  # only our own directory, never a version
            tf.io.gfile.rmtree(temporary_dir)


def _next_version(output_dir: str) -> int:
    names = (
        [base_name(name) for name in tf.io.gfile.listdir(output_dir)]
        if tf.io.gfile.isdir(output_dir)
        else []
    )
    return max((int(name) for name in names if name.isdigit()), default=0) + 1


def _publish(temporary_dir: str, output_dir: str) -> str:
    """Moves the complete export in `temporary_dir` to OUTPUT_DIR/N for the next free N
    (the next one again if another export takes N meanwhile); returns that directory.

    On a local disk the move is one directory rename, atomic. Object stores (gs://) and
    ram:// have no directory rename: the files move one by one, saved_model.pb last,
    so a watcher that finds saved_model.pb finds the whole version.
    """
    while True:
        version_dir = join_path(output_dir, str(_next_version(output_dir)))
        try:
            if "://" in output_dir:
                _move_files(temporary_dir, version_dir)
            else:
                tf.io.gfile.rename(temporary_dir, version_dir, overwrite=False)
            return version_dir
        except tf.errors.AlreadyExistsError:
            continue  # another export took this number first


def _move_files(source_dir: str, target_dir: str) -> None:
    """Moves the files of `source_dir` into a new `target_dir`, saved_model.pb last.

    Raises:
        tf.errors.AlreadyExistsError: `target_dir` exists.
    """
    if tf.io.gfile.exists(target_dir):
        raise tf.errors.AlreadyExistsError(None, None, f"{target_dir} exists")
    moves = []
    for directory, _, files in tf.io.gfile.walk(source_dir):
        relative = directory[len(source_dir) :].strip("/")
        target = join_path(target_dir, relative) if relative else target_dir
        tf.io.gfile.makedirs(target)  # also empty ones; listings need them on ram://
        moves += [(join_path(directory, name), join_path(target, name)) for name in files]
    moves.sort(key=lambda move: base_name(move[0]) == SAVED_MODEL_FILE)
    for source, target in moves:
        tf.io.gfile.rename(source, target, overwrite=False)


def export_run(
    run_dir: str,
    output_dir: str,
    decode_config: DecodeConfig | None = None,
    num_samples: int = 1,
    jit_compile: bool = False,
    quantization: str | None = None,
) -> str:
    """Exports a training run (its model.keras and vocabulary; local paths or URLs) with
    `decode_config` (default: the run's `decode` section) and, for translation,
    `num_samples` samples per sentence in the sample signatures, `jit_compile` for an
    XLA-compiled search and `quantization` "int8" for Keras's int8 weights
    (`model.quantize`); returns the version directory."""
    if quantization not in (None, "int8"):
        raise ValueError(f"a SavedModel's quantization must be 'int8', got {quantization!r}")
    task = load_run(run_dir).task
    if jit_compile and task != "translation":
        raise ValueError(f"XLA export is for translation runs; {run_dir} is a {task} run")
    if quantization and task != "translation":
        raise ValueError(f"int8 export is for translation runs; {run_dir} is a {task} run")
    if task == "classification":
        classifier = TextClassifier.from_run(run_dir)
        return export_classifier(
            classifier.model,
            classifier.tokenizer,
            classifier.labels,
            classifier.max_length,
            [vocabulary_paths(load_run(run_dir).data)[0]],
            output_dir,
        )
    if task == "language_model":
        generator = Generator.from_run(run_dir, decode_config, jit_compile=False)
        return export_generator(
            generator.model,
            generator.tokenizer,
            generator.decode_config,
            [vocabulary_paths(generator.data_config)[0]],
            output_dir,
        )
    translator = Translator.from_run(run_dir, decode_config, jit_compile=False)
    if quantization:
        translator.model.quantize(quantization)
    return export_translator(
        translator.model,
        translator.source_tokenizer,
        translator.target_tokenizer,
        translator.decode_config,
        list(vocabulary_paths(translator.data_config)),
        output_dir,
        num_samples,
        jit_compile,
    )


def export_classifier(
    model,
    tokenizer,
    labels: list[str],
    max_length: int,
    vocabulary_files: list[str],
    output_dir: str,
) -> str:
    """Writes a classifier's SavedModel to the next version directory OUTPUT_DIR/N and
    returns it. serving_default: `inputs` tf.string ``[batch]`` -> `label` tf.string
    ``[batch]`` (the most probable) and `probabilities` float32 ``[batch, classes]`` (in
    the order of the run's labels.txt)."""
    model = float32_copy(model)
    label_table = tf.constant(labels, tf.string)

    def serving_default(inputs):
        probabilities = text_probabilities(model, tokenizer, inputs, max_length)
        best = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        return {"label": tf.gather(label_table, best), "probabilities": probabilities}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)
    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[tf.TensorSpec([None], tf.string, name="inputs")],
    )
    return write_version(archive, vocabulary_files, output_dir)
