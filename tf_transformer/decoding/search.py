"""Token generation with the model's fixed-size key/value cache.

`search` is the entry point: greedy search, beam search or sampling, as `DecodeConfig`
says. Greedy search uses keras_hub's GreedySampler over `Seq2SeqTransformer.decode_step`;
beam search (`beam_search`) and sampling (`sample_loop`, drawing with the stateless
`sampling.sample_next_tokens`) are our own. Shapes are static, so every strategy
compiles with XLA.

Dimension letters: B sentences, K beams, N hypotheses returned per sentence, L
max_length (generated tokens), V target vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import keras_hub
from keras import ops

from tf_transformer.config import DecodeConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.decoding.sampling import SamplingParameters, sample_next_tokens
from tf_transformer.layers.masks import padding_mask

# Log-probability of an impossible hypothesis: finite, so sums and differences of it
# never become NaN (as in flax examples/wmt decode.py).
NEG_INF = -1.0e7


class SearchResult(NamedTuple):
    sequences: object  # [B, N, L] int32, no BOS; the first EOS and all after it are PAD
    scores: object  # [B, N] float32, best first


def strip_after_eos(token_ids):
    """Replaces the first EOS and everything after it by PAD. ``[B, T] -> [B, T]``."""
    seen_eos = ops.cumsum(ops.cast(ops.equal(token_ids, EOS), "int32"), axis=1) > 0
    return ops.where(seen_eos, ops.zeros_like(token_ids) + PAD, token_ids)


def forbid_special_tokens(logits):
    """Logits ``[..., V]`` with PAD and BOS made impossible: no strategy generates them."""
    token_ids = ops.arange(ops.shape(logits)[-1])  # [V]
    forbidden = ops.logical_or(ops.equal(token_ids, PAD), ops.equal(token_ids, BOS))
    return ops.where(forbidden, NEG_INF, logits)


def _next_token_logits(model):
    """Adapts `decode_step` to keras_hub's sampler protocol: the logits for position
    `index` come from the token at `index - 1`."""

    def next_fn(prompt, cache, index):
        step = model.decode_step(prompt[:, index - 1], cache, index - 1)
        return forbid_special_tokens(step.logits), None, step.cache

    return next_fn


def generate(model, encoder_inputs, max_length: int, sampler=None):
    """Target ids ``[B, max_length]`` (no BOS; EOS and after it PAD) for source ids
    ``[B, S]``. `sampler` is a keras_hub sampler; greedy by default."""
    return strip_after_eos(_sample(model, encoder_inputs, max_length, sampler))


def _sample(model, encoder_inputs, max_length, sampler=None):
    """Sampled ids ``[B, max_length]`` without BOS, EOS kept; greedy by default."""
    sampler = sampler or keras_hub.samplers.GreedySampler()
    encoder_outputs = model.encode(encoder_inputs, training=False)
    cache = model.initial_cache(encoder_outputs, padding_mask(encoder_inputs), max_length + 1)
    batch_size = ops.shape(encoder_inputs)[0]
    prompt = ops.pad(ops.full((batch_size, 1), BOS, "int32"), ((0, 0), (0, max_length)))
    prompt_mask = ops.equal(ops.arange(max_length + 1), 0)[None, :]
    tokens = sampler(
        _next_token_logits(model),
        prompt,
        cache=cache,
        index=1,
        mask=ops.broadcast_to(prompt_mask, ops.shape(prompt)),
        stop_token_ids=(EOS,),
    )
    return tokens[:, 1:]


def sequence_log_probs(model, encoder_inputs, tokens):
    """Summed log-probability of `tokens` ``[B, T]`` (no BOS) up to and including the
    first EOS, from one teacher-forced forward pass, PAD and BOS excluded as in the
    search. ``-> [B] float32``."""
    batch_size = ops.shape(tokens)[0]
    decoder_inputs = ops.concatenate(
        [ops.full((batch_size, 1), BOS, "int32"), strip_after_eos(tokens)[:, :-1]], axis=1
    )
    logits = forbid_special_tokens(
        model({"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}, training=False)
    )  # [B, T, V]
    token_log_probs = ops.take_along_axis(
        ops.log_softmax(logits, axis=-1), ops.cast(tokens, "int32")[:, :, None], axis=-1
    )[:, :, 0]  # [B, T]
    is_eos = ops.cast(ops.equal(tokens, EOS), "int32")  # [B, T]
    up_to_first_eos = ops.cumsum(is_eos, axis=1) - is_eos == 0  # [B, T]
    return ops.sum(ops.where(up_to_first_eos, token_log_probs, 0.0), axis=1)


def search(
    model,
    encoder_inputs,
    decode_config: DecodeConfig,
    max_length,
    use_cache: bool = True,
    sampling: SamplingParameters | None = None,
) -> SearchResult:
    """Translations of source ids ``[B, S]`` as `decode_config` asks.

    Greedy (beam_size 1): N=1, score = summed log-probability. Beam search (beam_size
    > 1): the `num_return_sequences` best beams, scores with the length penalty.
    Sampling (`sample`): `num_return_sequences` samples per sentence, sorted by their
    summed log-probability. `use_cache=False` runs the same search with the naive
    decoder (`uncached_next_logits`), for speed comparisons.

    `max_length` (most generated tokens) is a Python int, or a scalar tensor outside
    XLA. `sampling` replaces the sampling settings and seed of `decode_config` (default:
    `SamplingParameters.from_config(decode_config)`, the first batch's seed).
    """
    if not use_cache:
        if decode_config.sample:
            raise ValueError("use_cache=False is for comparing searches; sampling always caches")
        return _beam_search_model(model, encoder_inputs, decode_config, max_length, use_cache)
    if decode_config.beam_size > 1:
        return _beam_search_model(model, encoder_inputs, decode_config, max_length)
    if not decode_config.sample:
        tokens = _sample(model, encoder_inputs, max_length)
        scores = sequence_log_probs(model, encoder_inputs, tokens)[:, None]  # [B, 1]
        return SearchResult(strip_after_eos(tokens)[:, None, :], scores)
    count = decode_config.num_return_sequences
    repeated_inputs = ops.repeat(encoder_inputs, count, axis=0)  # [B * N, S]
    sampling = sampling or SamplingParameters.from_config(decode_config)
    tokens = sample_tokens(model, repeated_inputs, max_length, sampling)  # [B * N, L]
    scores = ops.reshape(sequence_log_probs(model, repeated_inputs, tokens), (-1, count))  # [B, N]
    scores, order = ops.top_k(scores, k=count)  # best first
    sequences = ops.reshape(strip_after_eos(tokens), (-1, count, max_length))
    return SearchResult(ops.take_along_axis(sequences, order[:, :, None], axis=1), scores)


def sample_tokens(model, encoder_inputs, max_length, sampling: SamplingParameters):
    """Sampled ids ``[B, max_length]`` (no BOS; EOS kept, PAD after it) for source ids
    ``[B, S]``, drawn with `sampling`'s settings and seed."""
    encoder_outputs = model.encode(encoder_inputs, training=False)
    cache = model.initial_cache(encoder_outputs, padding_mask(encoder_inputs), max_length)
    return sample_loop(
        model_next_logits(model), cache, ops.shape(encoder_inputs)[0], max_length, sampling
    )


def sample_loop(next_logits, cache, batch_size, max_length, sampling: SamplingParameters):
    """Draws one token per step for each row until every row has drawn EOS or
    `max_length` tokens are drawn. ``-> [B, max_length]`` int32 (EOS kept, PAD after).

    keras_hub's samplers would draw from a seed variable (see `sampling`); this loop
    draws step `index`'s tokens from the batch seed folded with `index`, so a row's
    tokens depend only on its logits, its row number and the seed.

    Args:
        next_logits: as `beam_search` takes it: ``(token_ids [B], cache, index) ->
            (logits [B, V], cache)``.
        cache: any nest of ``[B, ...]`` tensors.
        batch_size: B, a Python int or scalar tensor.
        max_length: most tokens drawn, EOS included.
        sampling: the settings and the batch's seed.
    """
    tokens = ops.pad(
        ops.full((batch_size, 1), BOS, "int32"), ((0, 0), (0, max_length))
    )  # [B, L + 1]
    finished = ops.zeros((batch_size,), "bool")

    def unfinished(index, tokens, finished, cache):
        return ops.logical_not(ops.all(finished))

    def step(index, tokens, finished, cache):
        logits, cache = next_logits(ops.take(tokens, index, axis=1), cache, index)  # [B, V]
        next_tokens = ops.cast(sample_next_tokens(logits, sampling, index), "int32")  # [B]
        next_tokens = ops.where(finished, PAD, next_tokens)
        position_is_next = ops.arange(max_length + 1) == index + 1  # [L + 1]
        tokens = ops.where(position_is_next[None, :], next_tokens[:, None], tokens)
        finished = ops.logical_or(finished, ops.equal(next_tokens, EOS))
        return index + 1, tokens, finished, cache

    state = (ops.convert_to_tensor(0, "int32"), tokens, finished, cache)
    _, tokens, _, _ = ops.while_loop(unfinished, step, state, maximum_iterations=max_length)
    return tokens[:, 1:]


def model_next_logits(model):
    """`beam_search`'s `next_logits` over `model.decode_step`, PAD and BOS forbidden."""

    def next_logits(token_ids, cache, index):
        step = model.decode_step(token_ids, cache, index)
        return forbid_special_tokens(step.logits), step.cache

    return next_logits


class PrefixState(NamedTuple):
    """What the naive decoder carries instead of a key/value cache."""

    prefix: object  # [B, L + 1] int32: BOS, the tokens so far, then PAD
    encoder_outputs: object  # [B, S, d_model]
    encoder_padding_mask: object  # [B, S] bool


def uncached_next_logits(model):
    """`beam_search`'s `next_logits` without a cache: every step re-runs the decoder over
    the whole fixed-length prefix (the causal mask hides the PAD tail). Only for
    measuring what the cache saves; it gives the same tokens."""

    def next_logits(token_ids, state, index):
        prefix = ops.slice_update(state.prefix, (0, index), ops.cast(token_ids, "int32")[:, None])
        logits = model.decode(prefix, state.encoder_outputs, state.encoder_padding_mask)
        step_logits = ops.take(logits, index, axis=1)  # [B, V]
        return forbid_special_tokens(step_logits), state._replace(prefix=prefix)

    return next_logits


def _beam_search_model(model, encoder_inputs, decode_config, max_length, use_cache=True):
    encoder_outputs = model.encode(encoder_inputs, training=False)
    encoder_padding_mask = padding_mask(encoder_inputs)
    if use_cache:
        next_logits = model_next_logits(model)
        cache = model.initial_cache(encoder_outputs, encoder_padding_mask, max_length)
    else:
        next_logits = uncached_next_logits(model)
        batch_size = ops.shape(encoder_inputs)[0]
        cache = PrefixState(
            ops.zeros((batch_size, max_length + 1), "int32"),
            encoder_outputs,
            encoder_padding_mask,
        )
    return beam_search(
        next_logits,
        cache,
        batch_size=ops.shape(encoder_inputs)[0],
        beam_size=decode_config.beam_size,
        max_length=max_length,
        # A single beam without length penalty is exactly greedy search.
        length_penalty=decode_config.length_penalty if decode_config.beam_size > 1 else 0.0,
        num_return_sequences=decode_config.num_return_sequences,
    )


def length_penalty_divisor(length, alpha: float):
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


class _BeamState(NamedTuple):
    index: object  # [] int32: position of the tokens fed to this step (0: BOS)
    live_sequences: object  # [B, K, L + 1] int32, BOS first
    live_log_probs: object  # [B, K] float32, best first
    finished_sequences: object  # [B, K, L + 1] int32
    finished_scores: object  # [B, K] float32, length-penalised, best first
    finished_flags: object  # [B, K] bool
    cache: object  # any nest of [B * K, ...] tensors


def beam_search(
    next_logits,
    cache,
    batch_size,
    beam_size: int,
    max_length: int,
    length_penalty: float = 0.6,
    num_return_sequences: int = 1,
) -> SearchResult:
    """Beam search with the GNMT length penalty, an early stop and n-best output.

    keras_hub's BeamSampler has neither a length penalty nor n-best output, hence our
    own, after flax examples/wmt decode.py: each step ranks the 2K best extensions of
    the K live beams; those ending in EOS within the top K join the K finished
    hypotheses (score = summed log-prob / ((5 + length) / 6) ** alpha, length counting
    EOS), the K best others stay live. Considering EOS only within the top K makes
    beam_size 1 with alpha 0 exactly greedy search. The loop stops once no live beam
    can beat the worst finished one, even at full length.

    Args:
        next_logits: ``(token_ids [B * K], cache, index) -> (logits [B * K, V], cache)``,
            the logits of the token after `token_ids`, which sit at position `index`
            (0 is BOS).
        cache: any nest of tensors with the batch ``[B, ...]`` on axis 0; it is repeated
            here for the K beams of each sentence and reordered as beams move.
        batch_size: B, a Python int or scalar tensor.
        beam_size: K.
        max_length: L, most tokens generated, EOS included.
        length_penalty: alpha; 0 ranks by summed log-probability.
        num_return_sequences: N <= K hypotheses returned per sentence.

    Returns:
        `SearchResult`: sequences ``[B, N, L]`` and scores ``[B, N]``, best first. If
        fewer than N hypotheses finished, the best live beams (scored at length L) fill
        the remaining places.
    """
    if not 1 <= num_return_sequences <= beam_size:
        raise ValueError(
            f"num_return_sequences must be in [1, beam_size={beam_size}], "
            f"got {num_return_sequences}"
        )
    cache = keras.tree.map_structure(lambda tensor: ops.repeat(tensor, beam_size, axis=0), cache)
    # Rows of a [B * K, ...] tensor that start each sentence's beams.
    batch_offsets = (ops.arange(batch_size, dtype="int32") * beam_size)[:, None]  # [B, 1]

    def reorder(tensor, beam_indices):
        """Rows of `tensor` ``[B * K, ...]`` for beams ``[B, K]``."""
        return ops.take(tensor, ops.reshape(batch_offsets + beam_indices, (-1,)), axis=0)

    def gather_beams(tensor, beam_indices):
        """``[B, K, ...]`` -> ``[B, M, ...]`` for beam numbers ``[B, M]``."""
        for _ in range(tensor.ndim - 2):
            beam_indices = ops.expand_dims(beam_indices, -1)
        return ops.take_along_axis(tensor, beam_indices, axis=1)

    initial_sequences = ops.pad(
        ops.full((batch_size, beam_size, 1), BOS, "int32"), ((0, 0), (0, 0), (0, max_length))
    )  # [B, K, L + 1]
    # Only the first beam is live at first, so the K beams do not all repeat it.
    first_beam_only = ops.where(ops.arange(beam_size) == 0, 0.0, NEG_INF)  # [K]
    state = _BeamState(
        index=ops.convert_to_tensor(0, "int32"),
        live_sequences=initial_sequences,
        live_log_probs=ops.tile(first_beam_only[None, :], (batch_size, 1)),
        finished_sequences=initial_sequences,
        finished_scores=ops.full((batch_size, beam_size), NEG_INF, "float32"),
        finished_flags=ops.zeros((batch_size, beam_size), "bool"),
        cache=cache,
    )
    best_possible_divisor = length_penalty_divisor(max_length, length_penalty)

    def can_improve(*state):
        state = _BeamState(*state)
        # Live log-probs only fall, and for alpha >= 0 the divisor is largest at L.
        best_live_scores = state.live_log_probs[:, :1] / best_possible_divisor  # [B, 1]
        worst_finished_scores = ops.where(
            state.finished_flags, ops.min(state.finished_scores, axis=1, keepdims=True), NEG_INF
        )  # [B, K]
        return ops.logical_not(ops.all(worst_finished_scores > best_live_scores))

    def step(*state):
        state = _BeamState(*state)
        index = state.index
        last_tokens = ops.reshape(ops.take(state.live_sequences, index, axis=2), (-1,))  # [B * K]
        logits, cache = next_logits(last_tokens, state.cache, index)  # [B * K, V]
        vocab_size = ops.shape(logits)[-1]
        log_probs = ops.reshape(
            ops.log_softmax(ops.cast(logits, "float32"), axis=-1), (-1, beam_size, vocab_size)
        )  # [B, K, V]
        candidate_log_probs = ops.reshape(
            state.live_log_probs[:, :, None] + log_probs, (-1, beam_size * vocab_size)
        )  # [B, K * V]
        top_log_probs, top_indices = ops.top_k(candidate_log_probs, k=2 * beam_size)  # [B, 2K]
        top_beams = top_indices // vocab_size  # [B, 2K]
        top_tokens = ops.cast(top_indices % vocab_size, "int32")  # [B, 2K]
        top_sequences = gather_beams(state.live_sequences, top_beams)  # [B, 2K, L + 1]
        position_is_next = ops.arange(max_length + 1) == index + 1  # [L + 1]
        top_sequences = ops.where(
            position_is_next[None, None, :], top_tokens[:, :, None], top_sequences
        )
        ends = ops.equal(top_tokens, EOS)  # [B, 2K]

        # The K best extensions that do not end stay live.
        live_log_probs, live_positions = ops.top_k(
            ops.where(ends, NEG_INF, top_log_probs), k=beam_size
        )  # [B, K]
        live_sequences = gather_beams(top_sequences, live_positions)  # [B, K, L + 1]
        cache = keras.tree.map_structure(
            lambda tensor: reorder(tensor, ops.take_along_axis(top_beams, live_positions, 1)),
            cache,
        )

        # Extensions ending in EOS within the top K join the finished hypotheses.
        in_top_k = ops.arange(2 * beam_size) < beam_size  # [2K]
        newly_finished = ops.logical_and(ends, in_top_k[None, :])  # [B, 2K]
        new_scores = top_log_probs / length_penalty_divisor(index + 1, length_penalty)
        finished_scores, finished_positions = ops.top_k(
            ops.concatenate(
                [state.finished_scores, ops.where(newly_finished, new_scores, NEG_INF)], axis=1
            ),
            k=beam_size,
        )  # [B, K] of 3K
        finished_sequences = gather_beams(
            ops.concatenate([state.finished_sequences, top_sequences], axis=1),
            finished_positions,
        )
        finished_flags = ops.take_along_axis(
            ops.concatenate([state.finished_flags, newly_finished], axis=1),
            finished_positions,
            axis=1,
        )
        return _BeamState(
            index + 1,
            live_sequences,
            live_log_probs,
            finished_sequences,
            finished_scores,
            finished_flags,
            cache,
        )

    state = _BeamState(
        *ops.while_loop(can_improve, step, tuple(state), maximum_iterations=max_length)
    )
    return _n_best(state, num_return_sequences, max_length, length_penalty)


def _n_best(state: _BeamState, count: int, max_length: int, length_penalty: float):
    """The `count` best finished hypotheses, then the best live beams (scored at full
    length) in the places no finished hypothesis fills."""
    finished_count = ops.sum(ops.cast(state.finished_flags, "int32"), axis=1)  # [B]
    places = ops.arange(count, dtype="int32")[None, :]  # [1, N]
    from_finished = places < finished_count[:, None]  # [B, N]
    live_places = ops.maximum(places - finished_count[:, None], 0)  # [B, N]
    live_scores = state.live_log_probs / length_penalty_divisor(max_length, length_penalty)
    scores = ops.where(
        from_finished,
        state.finished_scores[:, :count],
        ops.take_along_axis(live_scores, live_places, axis=1),
    )  # [B, N]
    sequences = ops.where(
        from_finished[:, :, None],
        state.finished_sequences[:, :count],
        ops.take_along_axis(state.live_sequences, live_places[:, :, None], axis=1),
    )[:, :, 1:]  # [B, N, L]
    batch_shape = ops.shape(sequences)[:2]
    sequences = strip_after_eos(ops.reshape(sequences, (-1, max_length)))
    return SearchResult(ops.reshape(sequences, (*batch_shape, max_length)), scores)
