"""Token generation over the model interface of `models.base`: any model that prepares
a cache (`start_generation`) and scores continuations (`continuation_logits`).

`search` is the entry point: greedy search, beam search or sampling, as `DecodeConfig`
says. Greedy search is beam search with one beam and no length penalty (exactly the
argmax at every step): keras_hub's GreedySampler takes neither a per-batch step limit
nor rows that are finished from the start (batch filler), and computes a softmax over
the vocabulary before its argmax at every step. Beam search (`beam_search`) and
sampling (`sampling.sample_loop`) are our own. Shapes are static, so every strategy
compiles with XLA. The inputs are whatever the model generates from: source ids for
the encoder-decoder, left-padded prompt ids for the language model.

Dimension letters: B rows, N hypotheses returned per row, L max_length (generated
tokens), V vocabulary.
"""

from __future__ import annotations

from keras import ops

from tf_transformer.config import DecodeConfig
from tf_transformer.constants import EOS, PAD
from tf_transformer.decoding.beam_search import SearchResult, beam_search, strip_after_eos
from tf_transformer.decoding.sampling import SamplingParameters, sample_loop
from tf_transformer.models.base import GenerationStart, forbid_special_tokens


def forbidding_special_tokens(next_logits):
    """`next_logits` with PAD and BOS made impossible (`forbid_special_tokens`)."""

    def wrapped(token_ids, cache, index):
        logits, cache = next_logits(token_ids, cache, index)
        return forbid_special_tokens(logits), cache

    return wrapped


def forbidding_special_tokens_in(start: GenerationStart) -> GenerationStart:
    """`start` with PAD and BOS made impossible in its `next_logits`, and in those of
    every selection of its sentences."""
    select = start.select_sentences
    return start._replace(
        next_logits=forbidding_special_tokens(start.next_logits),
        select_sentences=None
        if select is None
        else lambda cache, sentences: forbidding_special_tokens_in(select(cache, sentences)),
    )


def sequence_log_probs(model, inputs, tokens):
    """Summed log-probability of `tokens` ``[B, T]`` (after the start) up to and
    including the first EOS, from one teacher-forced forward pass, PAD and BOS excluded
    as in the search. ``-> [B] float32``."""
    logits = forbid_special_tokens(
        model.continuation_logits(inputs, strip_after_eos(tokens))
    )  # [B, T, V]
    token_log_probs = ops.take_along_axis(
        ops.log_softmax(logits, axis=-1), ops.cast(tokens, "int32")[:, :, None], axis=-1
    )[:, :, 0]  # [B, T]
    is_eos = ops.cast(ops.equal(tokens, EOS), "int32")  # [B, T]
    up_to_first_eos = ops.cumsum(is_eos, axis=1) - is_eos == 0  # [B, T]
    return ops.sum(ops.where(up_to_first_eos, token_log_probs, 0.0), axis=1)


def sample_tokens(model, inputs, max_length, sampling: SamplingParameters):
    """Sampled ids ``[B, max_length]`` (EOS kept, PAD after it), drawn with `sampling`'s
    settings and seed."""
    start: GenerationStart = model.start_generation(inputs, max_length)
    return sample_loop(
        forbidding_special_tokens(start.next_logits),
        start.cache,
        ops.shape(start.first_tokens)[0],
        max_length,
        sampling,
        first_tokens=start.first_tokens,
        start_index=start.start_index,
    )


def search(
    model,
    inputs,
    decode_config: DecodeConfig,
    max_length,
    use_cache: bool = True,
    sampling: SamplingParameters | None = None,
    num_samples=None,
    step_limit=None,
) -> SearchResult:
    """Generations from `inputs` ``[B, ...]`` as `decode_config` asks.

    Greedy (beam_size 1): N=1, score = summed log-probability. Beam search (beam_size
    > 1): the `num_return_sequences` best beams, scores with the length penalty.
    Sampling (`sample`): `num_return_sequences` samples per row, sorted by their
    summed log-probability. `use_cache=False` runs the same search with the model's
    naive decoder, for speed comparisons. Rows of `inputs` that are all PAD (batch
    filler) are not searched: they give empty sequences.

    `max_length` (most generated tokens, the shape of the sequences) is a Python int,
    or a scalar tensor outside XLA; `step_limit` (greedy and beam search), ``[B]`` or a
    scalar <= max_length, lowers each row's limit without changing the shapes. `sampling` replaces
    the sampling settings and seed of `decode_config` (default:
    `SamplingParameters.from_config(decode_config)`, the first batch's seed);
    `num_samples` replaces its num_return_sequences when sampling (a scalar tensor in a
    SavedModel signature).
    """
    if not use_cache and decode_config.sample:
        raise ValueError("use_cache=False is for comparing searches; sampling always caches")
    if not decode_config.sample:
        start = forbidding_special_tokens_in(model.start_generation(inputs, max_length, use_cache))
        return beam_search(
            start.next_logits,
            start.cache,
            batch_size=ops.shape(start.first_tokens)[0],
            beam_size=decode_config.beam_size,
            max_length=max_length,
            # A single beam without length penalty is exactly greedy search.
            length_penalty=decode_config.length_penalty if decode_config.beam_size > 1 else 0.0,
            num_return_sequences=decode_config.num_return_sequences,
            first_tokens=start.first_tokens,
            start_index=start.start_index,
            stop_rule=decode_config.stop_rule,
            step_limit=step_limit,
            finished_rows=ops.all(ops.equal(inputs, PAD), axis=1),
            reorder_cache=start.reorder_cache,
            select_sentences=start.select_sentences,
        )
    count = decode_config.num_return_sequences if num_samples is None else num_samples
    repeated_inputs = ops.repeat(inputs, count, axis=0)  # [B * N, ...]
    sampling = sampling or SamplingParameters.from_config(decode_config)
    tokens = sample_tokens(model, repeated_inputs, max_length, sampling)  # [B * N, L]
    scores = ops.reshape(sequence_log_probs(model, repeated_inputs, tokens), (-1, count))  # [B, N]
    scores, order = ops.top_k(scores, k=count)  # best first
    sequences = ops.reshape(strip_after_eos(tokens), (-1, count, max_length))
    return SearchResult(ops.take_along_axis(sequences, order[:, :, None], axis=1), scores)
