"""Strings in, strings out for language models: tokenize prompts -> prefill -> search ->
detokenize prompt + continuation."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tf_transformer import config as config_lib
from tf_transformer.config import DecodeConfig
from tf_transformer.constants import BOS, PAD
from tf_transformer.data.tokenizer import load_tokenizer, vocabulary_paths
from tf_transformer.decoding.sampling import SamplingParameters, batch_seed
from tf_transformer.decoding.search import search
from tf_transformer.decoding.translator import LENGTH_QUANTUM, Hypothesis, string_tensor
from tf_transformer.models import TransformerLanguageModel
from tf_transformer.models.base import load_run_model

logger = logging.getLogger(__name__)


def prompt_token_ids(tokenizer, prompts, model_max_length: int):
    """Left-padded prompt ids ``[B, P]`` int32 (BOS + pieces, PAD before; P a multiple of
    LENGTH_QUANTUM, at most model_max_length - 1) and each prompt's untruncated length
    ``[B]``. A prompt longer than P keeps its last P tokens. Invalid UTF-8 bytes become
    U+FFFD first. Pure TensorFlow: the Python `Generator` and the SavedModel share it."""
    prompts = tf.strings.unicode_transcode(
        prompts, "UTF-8", "UTF-8", errors="replace", replace_control_characters=False
    )
    pieces = tokenizer.tokenize(prompts)  # ragged [B, None]
    bos = tf.fill([pieces.nrows(), 1], tf.constant(BOS, pieces.dtype))
    rows = tf.concat([bos, pieces], axis=1)
    lengths = tf.cast(rows.row_lengths(), tf.int32)
    longest_allowed = model_max_length - 1
    rows = rows[:, -longest_allowed:]
    kept = tf.cast(rows.row_lengths(), tf.int32)
    longest = tf.reduce_max(kept)
    padded_length = tf.minimum(
        longest_allowed,
        LENGTH_QUANTUM * tf.cast(tf.math.ceil(longest / LENGTH_QUANTUM), tf.int32),
    )
    ids = rows.to_tensor(PAD)
    right_padded = tf.pad(ids, [[0, 0], [0, padded_length - tf.shape(ids)[1]]])  # [B, P]
    # Row b moves right by its padding: position p takes right_padded[p - padding].
    padding = padded_length - kept  # [B]
    source_positions = tf.range(padded_length)[None, :] - padding[:, None]  # [B, P]
    ids = tf.where(
        source_positions >= 0,
        tf.gather(right_padded, tf.maximum(source_positions, 0), batch_dims=1),
        PAD,
    )
    return tf.cast(ids, tf.int32), lengths


def new_token_budget(decode_config: DecodeConfig, prompt_length, model_max_length: int):
    """Most tokens generated after prompts padded to `prompt_length` (a Python int or a
    scalar tensor): decode.max_length if > 0, else as many as the context holds."""
    room = model_max_length - prompt_length + 1
    if decode_config.max_length:
        room = tf.minimum(room, decode_config.max_length)
    room = tf.maximum(room, 1)
    return int(room) if isinstance(prompt_length, int) else room


def continuation_texts(tokenizer, prompt_ids, sequences):
    """Texts ``[B, N]``: each prompt ``[B, P]`` (left-padded) followed by its generated
    sequences ``[B, N, L]`` (PAD after EOS)."""
    shape = tf.shape(sequences)
    repeated_prompts = tf.repeat(prompt_ids, shape[1], axis=0)  # [B * N, P]
    tokens = tf.concat([repeated_prompts, tf.reshape(sequences, [-1, shape[2]])], axis=1)
    keep = tf.logical_and(tokens != PAD, tokens != BOS)
    texts = tokenizer.detokenize(tf.ragged.boolean_mask(tokens, keep))
    return tf.reshape(texts, shape[:2])


class Generator:
    """Continues prompts with a trained `TransformerLanguageModel` and its tokenizer.

    Prompts go through in batches of `decode_config.batch_size` (the last one padded
    with empty prompts, so every call has the same batch dimension). Each prompt is
    BOS + its pieces, prefilled into the cache in one pass; an empty prompt generates
    from BOS alone. A prompt longer than the model's context minus one is truncated from
    the left, with a warning.

    Args:
        model: a trained `TransformerLanguageModel`.
        tokenizer: its `tensorflow_text.SentencepieceTokenizer`.
        decode_config: the default search or sampling settings.
        jit_compile: compile the search with XLA; default: yes, except when sampling
            (XLA draws other random numbers than the SavedModel, which runs without it).
    """

    def __init__(
        self, model, tokenizer, decode_config: DecodeConfig | None = None, jit_compile=None
    ):
        if not isinstance(model, TransformerLanguageModel):
            raise ValueError(
                f"Generator needs a language model, got a {type(model).__name__} "
                "(translate with tf-transformer translate)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.decode_config = decode_config or DecodeConfig()
        self.jit_compile = jit_compile
        self.model_max_length = model.config.max_length
        self.data_config = None  # the run's DataConfig, when built by `from_run`
        self._searches: dict[tuple[DecodeConfig, bool], tf.types.experimental.GenericFunction] = {}

    @classmethod
    def from_run(cls, run_dir: str, decode_config: DecodeConfig | None = None, **options):
        """The generator of a language-model run directory (its model.keras and
        vocabulary; a local path or any tf.io.gfile URL); `decode_config` defaults to
        the run's `decode` section."""
        run_dir = str(run_dir)
        experiment = config_lib.load_run(run_dir)
        if experiment.task != "language_model":
            raise ValueError(
                f"{run_dir} is a {experiment.task} run, not a language model: "
                "use tf-transformer translate"
            )
        model = load_run_model(run_dir, TransformerLanguageModel)
        tokenizer = load_tokenizer(vocabulary_paths(experiment.data)[0])
        generator = cls(model, tokenizer, decode_config or experiment.decode, **options)
        generator.data_config = experiment.data
        return generator

    def settings(self, **overrides) -> DecodeConfig:
        """The decode config with `overrides` (None: keep) applied and checked. Giving a
        temperature, top_k or top_p samples (unless beam_size > 1)."""
        given = {name: value for name, value in overrides.items() if value is not None}
        if (
            {"temperature", "top_k", "top_p"} & set(given)
            and given.get("beam_size", 1) == 1
            and "sample" not in given
        ):
            given["sample"] = True
        if given.get("beam_size", 1) > 1:
            given.setdefault("sample", False)
        return dataclasses.replace(self.decode_config, **given)

    def _search_function(self, decode_config: DecodeConfig):
        jit_compile = self.jit_compile
        if jit_compile is None:
            jit_compile = not decode_config.sample
        key = (decode_config, jit_compile)
        if key not in self._searches:

            def search_ids(prompt_ids, max_length, seed):
                sampling = None
                if decode_config.sample:
                    sampling = SamplingParameters.from_config(decode_config)._replace(seed=seed)
                return search(self.model, prompt_ids, decode_config, max_length, sampling=sampling)

            self._searches[key] = tf.function(search_ids, jit_compile=jit_compile)
        return self._searches[key]

    def prompt_ids(self, prompts: Sequence[str | bytes]):
        """Left-padded prompt ids ``[B, P]`` and untruncated lengths (`prompt_token_ids`)."""
        return prompt_token_ids(self.tokenizer, string_tensor(list(prompts)), self.model_max_length)

    def generate_with_scores(
        self, prompts: Sequence[str | bytes], **settings
    ) -> list[list[Hypothesis]]:
        """Per prompt, its `num_return_sequences` continuations (prompt + generated text)
        best first, with their scores (log-probability; beam: length-penalised).
        `settings`: any `DecodeConfig` field (see `settings`)."""
        if isinstance(prompts, (str, bytes)):
            prompts = [prompts]
        decode_config = self.settings(**settings)
        search_function = self._search_function(decode_config)
        results = []
        batch_size = decode_config.batch_size
        for batch_number, start in enumerate(range(0, len(prompts), batch_size)):
            batch = list(prompts[start : start + batch_size])
            prompt_ids, lengths = self.prompt_ids(batch + [""] * (batch_size - len(batch)))
            for prompt, length in zip(batch, lengths.numpy(), strict=False):
                if length > prompt_ids.shape[1]:
                    logger.warning(
                        "Prompt of %d tokens truncated from the left to the model's context "
                        "of %d: %.60s...",
                        length,
                        prompt_ids.shape[1],
                        prompt,
                    )
            max_length = new_token_budget(decode_config, prompt_ids.shape[1], self.model_max_length)
            seed = batch_seed(decode_config.seed, batch_number)
            result = search_function(prompt_ids, max_length, seed)
            texts = continuation_texts(self.tokenizer, prompt_ids, result.sequences).numpy()
            scores = np.asarray(result.scores)
            for row in range(len(batch)):
                results.append(
                    [
                        Hypothesis(text.decode("utf-8"), float(score))
                        for text, score in zip(texts[row], scores[row], strict=True)
                    ]
                )
        return results

    def generate(
        self,
        prompts: Sequence[str | bytes],
        max_length: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        num_return_sequences: int | None = None,
        seed: int | None = None,
        beam_size: int | None = None,
        sample: bool | None = None,
    ) -> list[str]:
        """``len(prompts) * num_return_sequences`` texts, each a prompt and its
        continuation, grouped by prompt (best first). Unset arguments come from the
        decode config; a temperature, top_k or top_p samples; beam_size > 1 searches."""
        hypotheses = self.generate_with_scores(
            prompts,
            max_length=max_length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_return_sequences=num_return_sequences,
            seed=seed,
            beam_size=beam_size,
            sample=sample,
        )
        return [hypothesis.text for row in hypotheses for hypothesis in row]
