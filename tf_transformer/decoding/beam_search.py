"""Beam search with the GNMT length penalty, a per-sentence stop and n-best output.

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


# Candidate selection reads the vocabulary in chunks of about this many logits.
_CHUNK = 64


# Once at most half of a batch's sentences are unfinished, the search goes on with that
# half alone (when the model can select sentences), down to this many sentences, at
# most _COMPACTIONS times: each halving is one more compiled loop.
_SMALLEST_COMPACTED_BATCH = 4
_COMPACTIONS = 3


class _Sentences(NamedTuple):
    """The sentences a search loop runs on."""

    count: object  # B: a Python int, or a scalar tensor
    step_limits: object  # [B] int32: most tokens each may generate
    best_possible_divisors: object  # [B] float32: the length penalty at that limit


class _BeamState(NamedTuple):
    index: object  # [] int32: sequence position of the tokens fed to this step (0: start)
    live_sequences: object  # [B, K, L + 1] int32, the start token first
    live_log_probs: object  # [B, K] float32, best first
    finished_sequences: object  # [B, K, L + 1] int32
    finished_scores: object  # [B, K] float32, length-penalised, best first
    finished_flags: object  # [B, K] bool
    done: object  # [B] bool: the sentence's hypotheses no longer change
    cache: object  # any nest of [B * K, ...] tensors


# The fields of `_BeamState` with one row per sentence.
_PER_SENTENCE = (
    "live_sequences",
    "live_log_probs",
    "finished_sequences",
    "finished_scores",
    "finished_flags",
    "done",
)


def _chunk_size(vocab_size: int) -> int | None:
    """A divisor of `vocab_size` near _CHUNK, or None (small or awkward vocabularies)."""
    if vocab_size < 16 * _CHUNK:
        return None
    divisors = [size for size in range(_CHUNK // 2, 2 * _CHUNK + 1) if vocab_size % size == 0]
    return min(divisors, key=lambda size: abs(size - _CHUNK)) if divisors else None


def top_extensions(logits, live_log_probs, count: int):
    """The `count` best one-token extensions of the live beams of each sentence.

    Args:
        logits: ``[B, K, V]`` float32 next-token logits of each beam.
        live_log_probs: ``[B, K]`` summed log-probabilities of the beams.
        count: extensions kept per sentence.

    Returns:
        ``(log_probs, beams, tokens)``, each ``[B, count]``, best first: the beam's
        log-probability plus the token's log-softmax, which beam, which token.

    The same as `top_k` over all ``K * V`` log-probabilities, without materialising
    them: XLA's CPU top-k over 32,000 values costs more than the step's vocabulary
    matmul. A chunk of the vocabulary holds one of the `count` best only if its best
    logit is among the `count` best chunk maxima, so top-k runs over the ``K * V / 64``
    chunk maxima, then over the `count` chunks they pick. (Among exactly equal values
    the order can differ from `top_k`'s.)
    """
    batch_size = ops.shape(logits)[0]
    beams, vocab_size = logits.shape[1:]  # static: K and V are never dynamic
    chunk = _chunk_size(vocab_size)
    log_normalizers = ops.logsumexp(logits, axis=-1)  # [B, K]
    offsets = live_log_probs - log_normalizers  # [B, K]
    if chunk is None:
        candidates = ops.reshape(logits + offsets[:, :, None], (batch_size, beams * vocab_size))
        values, indices = ops.top_k(candidates, k=count)
        return values, indices // vocab_size, ops.cast(indices % vocab_size, "int32")
    chunks_per_beam = vocab_size // chunk
    chunked = ops.reshape(logits, (batch_size, beams * chunks_per_beam, chunk))
    chunk_offsets = ops.repeat(offsets, chunks_per_beam, axis=1)  # [B, K * C]
    _, best_chunks = ops.top_k(ops.max(chunked, axis=-1) + chunk_offsets, k=count)  # [B, n]
    candidates = (
        ops.take_along_axis(chunked, best_chunks[:, :, None], axis=1)
        + (ops.take_along_axis(chunk_offsets, best_chunks, axis=1)[:, :, None])
    )  # [B, n, chunk]
    values, positions = ops.top_k(ops.reshape(candidates, (batch_size, count * chunk)), k=count)
    flat = ops.take_along_axis(best_chunks, positions // chunk, axis=1) * chunk + positions % chunk
    return values, flat // vocab_size, ops.cast(flat % vocab_size, "int32")


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
    stop_rule: str = "beams_finished",
    step_limit=None,
    finished_rows=None,
    reorder_cache=None,
    select_sentences=None,
) -> SearchResult:
    """Beam search with the GNMT length penalty, a per-sentence stop and n-best output.

    keras_hub's BeamSampler has neither a length penalty nor n-best output, hence our
    own, after flax examples/wmt decode.py and CTranslate2's BeamSearch: each step ranks
    the 2K best extensions of the K live beams; those ending in EOS within the top K
    join the K finished hypotheses (score = summed log-prob / ((5 + length) / 6) **
    alpha, length counting EOS), the K best others stay live. Considering EOS only
    within the top K makes beam_size 1 with alpha 0 exactly greedy search.

    A sentence stops changing once `stop_rule` holds for it: "beams_finished" (as
    CTranslate2 and Hugging Face's early_stopping): K hypotheses have finished;
    "exact" (flax): no live beam can beat the worst finished one even at full length,
    which gives the best hypotheses a longer search could find. The loop ends when
    every sentence has stopped.

    The first step runs on one row per sentence (its K beams would all be the same);
    the cache is repeated for the K beams after it and reordered as beams move
    (`reorder_cache`), so per-sentence state that no beam changes (an encoder's keys
    and values) belongs in `next_logits`'s closure, not in the cache.

    Args:
        next_logits: ``(token_ids [R], cache, index) -> (logits [R, V], cache)``, the
            logits of the token after `token_ids`, which sit at position `index`; R is
            B at the first step, B * K after it.
        cache: any nest of tensors with the batch ``[B, ...]`` on axis 0.
        batch_size: B, a Python int or scalar tensor.
        beam_size: K.
        max_length: L, most tokens generated, EOS included (a Python int: the shape
            of the sequences).
        length_penalty: alpha; 0 ranks by summed log-probability.
        num_return_sequences: N <= K hypotheses returned per sentence.
        first_tokens: ``[B]`` tokens the hypotheses continue (default BOS), at position
            `start_index` (the last token of a prefilled prompt).
        stop_rule: "beams_finished" or "exact".
        step_limit: most tokens generated per sentence, ``[B]`` or a scalar, tensors or
            ints <= L (default L): limits that vary from sentence to sentence within
            one compiled search.
        finished_rows: ``[B]`` bool, rows that need no search (batch filler): they
            stop at once and give empty hypotheses.
        reorder_cache: ``(cache, parent_rows [B * K], index) -> cache`` for beams that
            continue those rows after the step at model position `index` (default:
            every tensor's rows gathered). The first step's repetition to K beams
            always gathers.
        select_sentences: ``(cache, sentences [B2]) -> GenerationStart`` of only those
            sentences (`models.base.GenerationStart`). With it, once at most half of
            the sentences are unfinished the search goes on with those alone (as
            CTranslate2 drops finished sentences from its batch at every step), so
            late steps no longer run every row of the batch. Needs a static B.

    Returns:
        `SearchResult`: sequences ``[B, N, L]`` and scores ``[B, N]``, best first. If
        fewer than N hypotheses finished, the best live beams (scored at their step
        limit) fill the remaining places.
    """
    if not 1 <= num_return_sequences <= beam_size:
        raise ValueError(
            f"num_return_sequences must be in [1, beam_size={beam_size}], "
            f"got {num_return_sequences}"
        )
    if stop_rule not in ("beams_finished", "exact"):
        raise ValueError(f"stop_rule must be 'beams_finished' or 'exact', got {stop_rule!r}")
    step_limits = ops.broadcast_to(
        ops.minimum(
            ops.cast(max_length if step_limit is None else step_limit, "int32"), max_length
        ),
        (batch_size,),
    )  # [B]
    batch = _Sentences(batch_size, step_limits, length_penalty_divisor(step_limits, length_penalty))

    def gather_beams(tensor, beam_indices):
        """``[B, K, ...]`` -> ``[B, M, ...]`` for beam numbers ``[B, M]``."""
        for _ in range(tensor.ndim - 2):
            beam_indices = ops.expand_dims(beam_indices, -1)
        return ops.take_along_axis(tensor, beam_indices, axis=1)

    def extend(state: _BeamState, logits, sentences: _Sentences, reorder_cache) -> _BeamState:
        """`state` after one step with next-token `logits` ``[B * k, V]`` of its k live
        beams (k: 1 at the first step, K after it)."""
        index = state.index
        live_count = state.live_log_probs.shape[1]
        logits = ops.reshape(
            ops.cast(logits, "float32"), (sentences.count, live_count, logits.shape[-1])
        )
        top_log_probs, top_beams, top_tokens = top_extensions(
            logits, state.live_log_probs, 2 * beam_size
        )  # [B, 2K]
        top_sequences = gather_beams(state.live_sequences, top_beams)  # [B, 2K, L + 1]
        position_is_next = ops.arange(max_length + 1) == index + 1  # [L + 1]
        top_sequences = ops.where(
            position_is_next[None, None, :], top_tokens[:, :, None], top_sequences
        )
        ends = ops.equal(top_tokens, EOS)  # [B, 2K]

        # The K best extensions that do not end stay live; a stopped sentence keeps its
        # beams as they were.
        live_log_probs, live_positions = ops.top_k(
            ops.where(ends, NEG_INF, top_log_probs), k=beam_size
        )  # [B, K]
        live_sequences = gather_beams(top_sequences, live_positions)  # [B, K, L + 1]
        stopped = state.done[:, None]  # [B, 1]
        live_log_probs = ops.where(stopped, state.live_log_probs, live_log_probs)
        live_sequences = ops.where(stopped[:, :, None], state.live_sequences, live_sequences)
        live_parents = ops.take_along_axis(top_beams, live_positions, axis=1)  # [B, K]
        # Rows of the [B * k, ...] cache that the new beams continue.
        parent_rows = (
            ops.arange(sentences.count, dtype="int32")[:, None] * live_count + live_parents
        )
        parent_rows = ops.reshape(parent_rows, (-1,))  # [B * K]
        cache = state.cache  # one beam (greedy search): every row continues itself
        if beam_size > 1 and live_count > 1 and reorder_cache is not None:
            cache = reorder_cache(cache, parent_rows, position_after(start_index, index))
        elif beam_size > 1:
            cache = keras.tree.map_structure(
                lambda tensor: ops.take(tensor, parent_rows, axis=0), cache
            )

        # Extensions ending in EOS within the top K join the finished hypotheses, unless
        # their sentence has stopped.
        in_top_k = ops.arange(2 * beam_size) < beam_size  # [2K]
        newly_finished = ends & in_top_k[None, :] & ops.logical_not(state.done)[:, None]
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
        all_finished = ops.all(finished_flags, axis=1)  # [B]: K finished hypotheses
        if stop_rule == "exact":
            # Live log-probs only fall, and for alpha >= 0 the divisor is largest at the
            # limit: no live beam can beat the worst finished hypothesis.
            cannot_improve = ops.min(finished_scores, axis=1) > (
                live_log_probs[:, 0] / sentences.best_possible_divisors
            )
            all_finished = all_finished & cannot_improve
        at_limit = index + 1 >= sentences.step_limits  # [B]
        return _BeamState(
            index + 1,
            live_sequences,
            live_log_probs,
            finished_sequences,
            finished_scores,
            finished_flags,
            state.done | all_finished | at_limit,
            cache,
        )

    def run_steps(state, sentences, next_logits, reorder_cache, most_unfinished=0):
        """`state` after steps until at most `most_unfinished` sentences are unfinished."""

        def keep_going(*state):
            unfinished = ops.sum(ops.cast(ops.logical_not(_BeamState(*state).done), "int32"))
            return unfinished > most_unfinished

        def step(*state):
            state = _BeamState(*state)
            last_tokens = ops.reshape(
                ops.take(state.live_sequences, state.index, axis=2), (-1,)
            )  # [B * K]
            logits, cache = next_logits(
                last_tokens, state.cache, position_after(start_index, state.index)
            )  # [B * K, V]
            return tuple(extend(state._replace(cache=cache), logits, sentences, reorder_cache))

        return _BeamState(
            *ops.while_loop(keep_going, step, tuple(state), maximum_iterations=max_length - 1)
        )

    if first_tokens is None:
        first_tokens = ops.full((batch_size,), BOS, "int32")
    first_tokens = ops.cast(first_tokens, "int32")
    if finished_rows is None:
        finished_rows = ops.zeros((batch_size,), "bool")
    initial_sequences = ops.pad(
        first_tokens[:, None, None], ((0, 0), (0, 0), (0, max_length))
    )  # [B, 1, L + 1]
    state = _BeamState(
        index=ops.convert_to_tensor(0, "int32"),  # of the sequences; the model's: + start
        live_sequences=initial_sequences,
        live_log_probs=ops.zeros((batch_size, 1), "float32"),
        finished_sequences=ops.repeat(initial_sequences, beam_size, axis=1),
        finished_scores=ops.full((batch_size, beam_size), NEG_INF, "float32"),
        finished_flags=ops.zeros((batch_size, beam_size), "bool"),
        done=ops.cast(finished_rows, "bool"),
        cache=cache,
    )
    # The first step, on one row per sentence; its K best extensions become the beams.
    logits, cache = next_logits(first_tokens, cache, start_index)
    state = extend(state._replace(cache=cache), logits, batch, reorder_cache)

    # Halvings: the state of the larger batch, and which of its sentences went on.
    halvings = []
    while (
        select_sentences is not None
        and isinstance(batch.count, int)
        and batch.count // 2 >= _SMALLEST_COMPACTED_BATCH
        and len(halvings) < _COMPACTIONS
    ):
        half = batch.count // 2
        state = run_steps(state, batch, next_logits, reorder_cache, most_unfinished=half)
        _, kept = ops.top_k(ops.cast(ops.logical_not(state.done), "float32"), k=half)
        halvings.append((state, kept))
        selected = select_sentences(state.cache, kept)
        next_logits, reorder_cache = selected.next_logits, selected.reorder_cache
        select_sentences = selected.select_sentences
        state = _BeamState(
            state.index,
            *(ops.take(getattr(state, field), kept, axis=0) for field in _PER_SENTENCE),
            selected.cache,
        )
        batch = _Sentences(half, *(ops.take(limits, kept, axis=0) for limits in batch[1:]))
    state = run_steps(state, batch, next_logits, reorder_cache)
    for larger, kept in reversed(halvings):
        state = larger._replace(
            index=state.index,
            **{
                field: ops.scatter_update(
                    getattr(larger, field), kept[:, None], getattr(state, field)
                )
                for field in _PER_SENTENCE
            },
        )
    return _n_best(state, num_return_sequences, max_length, step_limits, length_penalty)


def _n_best(state: _BeamState, count: int, max_length: int, step_limits, length_penalty: float):
    """The `count` best finished hypotheses, then the best live beams (scored at their
    sentence's step limit) in the places no finished hypothesis fills."""
    finished_count = ops.sum(ops.cast(state.finished_flags, "int32"), axis=1)  # [B]
    places = ops.arange(count, dtype="int32")[None, :]  # [1, N]
    from_finished = places < finished_count[:, None]  # [B, N]
    live_places = ops.maximum(places - finished_count[:, None], 0)  # [B, N]
    live_scores = (
        state.live_log_probs / length_penalty_divisor(step_limits, length_penalty)[:, None]
    )
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
