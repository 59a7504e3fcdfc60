"""Beam search with the GNMT length penalty, an early stop and n-best output.

Dimension letters: B sentences, K beams, N hypotheses returned per sentence, L
max_length (generated tokens), V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.models.base import NEG_INF, position_after


class SearchResult(NamedTuple):
    sequences: object  # [B, N, L] int32, no start token; the first EOS and all after it PAD
    scores: object  # [B, N] float32, best first


def strip_after_eos(token_ids):
    """Replaces the first EOS and everything after it by PAD. ``[B, T] -> [B, T]``."""
    seen_eos = ops.cumsum(ops.cast(ops.equal(token_ids, EOS), "int32"), axis=1) > 0
    return ops.where(seen_eos, ops.zeros_like(token_ids) + PAD, token_ids)


def length_penalty_divisor(length, alpha: float):
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


class _BeamState(NamedTuple):
    index: object  # [] int32: sequence position of the tokens fed to this step (0: start)
    live_sequences: object  # [B, K, L + 1] int32, the start token first
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
    first_tokens=None,
    start_index=0,
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
            the logits of the token after `token_ids`, which sit at position `index`.
        cache: any nest of tensors with the batch ``[B, ...]`` on axis 0; it is repeated
            here for the K beams of each sentence and reordered as beams move.
        batch_size: B, a Python int or scalar tensor.
        beam_size: K.
        max_length: L, most tokens generated, EOS included.
        length_penalty: alpha; 0 ranks by summed log-probability.
        num_return_sequences: N <= K hypotheses returned per sentence.
        first_tokens: ``[B]`` tokens the hypotheses continue (default BOS), at position
            `start_index` (the last token of a prefilled prompt).

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

    if first_tokens is None:
        first_tokens = ops.full((batch_size,), BOS, "int32")
    first_tokens = ops.broadcast_to(
        ops.cast(first_tokens, "int32")[:, None, None], (batch_size, beam_size, 1)
    )
    initial_sequences = ops.pad(first_tokens, ((0, 0), (0, 0), (0, max_length)))  # [B, K, L + 1]
    # Only the first beam is live at first, so the K beams do not all repeat it.
    first_beam_only = ops.where(ops.arange(beam_size) == 0, 0.0, NEG_INF)  # [K]
    state = _BeamState(
        index=ops.convert_to_tensor(0, "int32"),  # of the sequences; the model's: + start
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
        logits, cache = next_logits(
            last_tokens, state.cache, position_after(start_index, index)
        )  # [B * K, V]
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
