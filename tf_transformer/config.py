"""Experiment configuration: frozen dataclasses, validated on construction.

Every field is documented where it is declared. Unknown keys and bad values raise
``ValueError`` naming the field, so a typo in a YAML file never passes silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def from_dict(config_class: type[ConfigT], values: Mapping[str, Any], where: str = "") -> ConfigT:
    """Builds `config_class` from a mapping, rejecting keys it does not declare.

    `where` prefixes field names in error messages (e.g. ``"model."``).
    """
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown config key {where}{unknown[0]!s}; "
            f"valid keys for {where or config_class.__name__}: {', '.join(sorted(known))}"
        )
    return config_class(**values)


def _require_positive(config: Any, *field_names: str) -> None:
    for name in field_names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _require_choice(config: Any, field_name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, field_name)
    if value not in choices:
        raise ValueError(f"{field_name} must be one of {choices}, got {value!r}")


def _require_rate(config: Any, *field_names: str) -> None:
    for name in field_names:
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoder-decoder Transformer (Vaswani et al., 2017)."""

    # Source vocabulary size, special ids included (PAD=0, UNK=1, BOS=2, EOS=3).
    source_vocab_size: int = 8000
    # Target vocabulary size; must equal source_vocab_size when share_embeddings.
    target_vocab_size: int = 8000
    # Width of every residual stream (embeddings, attention and block outputs).
    d_model: int = 128
    # Attention heads; each head has d_model // num_heads dimensions.
    num_heads: int = 4
    # Inner width of the position-wise feed-forward network.
    ffn_dim: int = 256
    # Number of EncoderBlocks.
    num_encoder_layers: int = 2
    # Number of DecoderBlocks.
    num_decoder_layers: int = 2
    # Dropout on embeddings and on every sublayer output before the residual add.
    dropout: float = 0.1
    # Dropout on the attention probabilities.
    attention_dropout: float = 0.0
    # Feed-forward activation: "relu" (the paper) or "gelu".
    activation: str = "relu"
    # True: pre-LayerNorm blocks plus a final LayerNorm (stable); False: post-LN (the paper).
    normalize_first: bool = True
    # "sinusoidal" (the paper, no weights) or "learned" position embeddings.
    position_encoding: str = "sinusoidal"
    # Longest sequence, in tokens, the position table and the decoding cache can hold.
    max_length: int = 256
    # One embedding matrix for source and target tokens (joint vocabulary).
    share_embeddings: bool = True
    # Output projection is the transposed target embedding matrix.
    tie_output_embeddings: bool = True
    # Epsilon of every LayerNormalization.
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self) -> None:
        _require_positive(
            self,
            "source_vocab_size",
            "target_vocab_size",
            "d_model",
            "num_heads",
            "ffn_dim",
            "num_encoder_layers",
            "num_decoder_layers",
            "max_length",
        )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={self.d_model} "
                f"and num_heads={self.num_heads}"
            )
        _require_rate(self, "dropout", "attention_dropout")
        _require_choice(self, "activation", ("relu", "gelu"))
        _require_choice(self, "position_encoding", ("sinusoidal", "learned"))
        if self.share_embeddings and self.source_vocab_size != self.target_vocab_size:
            raise ValueError(
                "share_embeddings=True needs source_vocab_size == target_vocab_size, got "
                f"source_vocab_size={self.source_vocab_size} and "
                f"target_vocab_size={self.target_vocab_size}"
            )
        if self.layer_norm_epsilon <= 0:
            raise ValueError(
                f"layer_norm_epsilon must be positive, got {self.layer_norm_epsilon!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named architecture (see `MODEL_PRESETS`), with fields overridden by keyword."""
        if name not in MODEL_PRESETS:
            raise ValueError(
                f"Unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}"
            )
        return from_dict(cls, {**MODEL_PRESETS[name], **overrides}, where="model.")


# Architectures by name. `base` and `big` are Vaswani et al. (2017), Table 3.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to train in CI and in the offline default run.
    "tiny": dict(d_model=128, num_heads=4, ffn_dim=256, num_encoder_layers=2, num_decoder_layers=2),
    # The right size for Multi30k-scale corpora on a CPU.
    "small": dict(
        d_model=256, num_heads=4, ffn_dim=1024, num_encoder_layers=3, num_decoder_layers=3
    ),
    "base": dict(
        d_model=512, num_heads=8, ffn_dim=2048, num_encoder_layers=6, num_decoder_layers=6
    ),
    "big": dict(
        d_model=1024,
        num_heads=16,
        ffn_dim=4096,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.3,
    ),
}
