"""What every model family shares: its config in `get_config`, the multi-worker fit
fixes, and the small interface that decoding searches over.

Generation interface (flax's `tokens_to_logits`, keras-hub's `generate_step`): search
code never builds a model's inputs itself. A model

- `start_generation(inputs, max_new_tokens)` -> `GenerationStart`: the cache prepared
  from the inputs (the encoded source, or the prompt prefilled in one pass), the token
  each row continues from and its position, and the cached step;
- `continuation_logits(inputs, tokens)` -> ``[B, T, V]``: teacher-forced logits of
  `tokens` after the start, one full forward pass, for scoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import keras
from keras import ops

from tf_transformer.config import from_dict, join_path
from tf_transformer.constants import BOS, PAD
from tf_transformer.layers.attention import KeyValue
from tf_transformer.models.multi_worker import MultiWorkerFitMixin

# Log-probability of an impossible token or hypothesis: finite, so sums and differences
# of it never become NaN (as in flax examples/wmt decode.py).
NEG_INF = -1.0e7


class GenerationStart(NamedTuple):
    """Where a search starts: ``next_logits(first_tokens, cache, start_index)`` gives
    the logits of the first generated token, ``next_logits(t, cache, start_index + 1)``
    those after it, and so on."""

    first_tokens: object  # [B] int32: BOS, or each prompt's last token
    start_index: object  # int, or [] int32 tensor: position of first_tokens
    cache: object  # any nest of [B, ...] tensors
    # (token_ids [B], cache, index) -> (logits [B, V] float32, cache)
    next_logits: Callable
    # (cache, parent_rows [B * K], index) -> the cache of beams that continue those rows
    # after the step at position `index`; None: every tensor's rows gathered.
    reorder_cache: Callable | None = None
    # (cache, sentences [B2] int32) -> the GenerationStart of only those rows of the
    # batch (all R hypothesis rows of each): its cache, next_logits, reorder_cache and
    # select_sentences. A search drops finished sentences with it; None: it cannot.
    select_sentences: Callable | None = None


def position_after(start_index, steps):
    """The model position `steps` after `start_index`; no op when start_index is the
    Python int 0 (the encoder-decoder's searches), so their cache index stays the loop
    counter itself, as before searches had a start position."""
    if isinstance(start_index, int) and start_index == 0:
        return steps
    return start_index + steps


def forbid_special_tokens(logits):
    """Logits ``[..., V]`` with PAD and BOS made impossible: no search generates them."""
    token_ids = ops.arange(ops.shape(logits)[-1])  # [V]
    forbidden = ops.logical_or(ops.equal(token_ids, PAD), ops.equal(token_ids, BOS))
    return ops.where(forbidden, NEG_INF, logits)


class TransformerModel(MultiWorkerFitMixin, keras.Model):
    """Base of the model families: built from a config dataclass (or its dict form, as
    `get_config` stores it), which travels with the weights.

    Subclasses set `config_class` and implement the generation interface.
    """

    config_class: type = object

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = from_dict(self.config_class, config, where="model.")
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    def check_length(self, token_ids, what: str) -> None:
        """ValueError if `token_ids` ``[B, T]`` has more positions than the model."""
        length = token_ids.shape[1]
        if length is not None and length > self.config.max_length:
            raise ValueError(
                f"{what} has {length} tokens but model.max_length is {self.config.max_length}"
            )

    def empty_self_attention_cache(self, batch_size, length):
        """Zeros for one block's keys and values, each ``[B, H, length, Dh]``."""
        shape = (batch_size, self.config.num_heads, length, self.config.head_dim)
        return KeyValue(
            ops.zeros(shape, dtype=self.compute_dtype), ops.zeros(shape, dtype=self.compute_dtype)
        )

    def start_generation(self, inputs, max_new_tokens, use_cache: bool = True):
        raise NotImplementedError

    def continuation_logits(self, inputs, tokens):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def run_model_path(run_dir: str) -> str:
    """The model.keras of a run directory (local or a URL).

    Raises:
        FileNotFoundError: the run has no trained model.
    """
    import tensorflow as tf  # gfile: run directories may be URLs (gs://, ram://)

    model_path = join_path(run_dir, "model.keras")
    if not tf.io.gfile.exists(model_path):
        raise FileNotFoundError(f"No trained model in {run_dir} (expected model.keras)")
    return model_path


def load_run_model(run_dir: str, *model_classes: type) -> keras.Model:
    """The model.keras of a run, one of `model_classes`. compile=False: inference and
    fine-tuning need neither its optimizer nor its training loss. Keras reads URLs
    (gs://, ram://) itself, through a local temporary copy."""
    return keras.models.load_model(
        run_model_path(run_dir),
        custom_objects={model_class.__name__: model_class for model_class in model_classes},
        compile=False,
    )
