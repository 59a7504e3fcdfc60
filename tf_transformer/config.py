"""Experiment configuration: frozen dataclasses, validated on construction.

Every field is documented where it is declared. Unknown keys and bad values raise
``ValueError`` naming the field, so a typo in a YAML file never passes silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")

STRATEGY_CHOICES = ("auto", "tpu", "multi_worker", "mirrored", "default")


def from_dict(config_class: type[ConfigT], values: Mapping[str, Any], where: str = "") -> ConfigT:
    """Builds `config_class` from a mapping, rejecting keys it does not declare.

    `where` prefixes field names in error messages (e.g. ``"model."``).
    """
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown config key {where}{unknown[0]!s}; "
            f"valid keys for {where.rstrip('.') or config_class.__name__}: "
            f"{', '.join(sorted(known))}"
        )
    types = {field.name: field.type for field in dataclasses.fields(config_class)}
    return config_class(
        **{name: _coerce(f"{where}{name}", types[name], value) for name, value in values.items()}
    )


def _coerce(name: str, type_name: str, value: Any) -> Any:
    """`value` as the field's declared type (int, float, bool or str), or a ValueError.

    YAML reads "2e-3" as a string and "3" as an int; both are fine for a float field. It
    reads an empty value ("key=" on the command line, "key:" in a file) as null, which for
    a string field is the empty string (every such field's "none").
    """
    if type_name == "str" and value is None:
        return ""
    if type_name == "float" and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif (
        type_name == "int"
        and isinstance(value, int)
        and not isinstance(value, bool)
        or type_name == "bool"
        and isinstance(value, bool)
        or type_name == "str"
        and isinstance(value, str)
    ):
        return value
    raise ValueError(f"{name} must be {type_name}, got {value!r}")


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
class BlockConfig:
    """What every model family shares: the sizes and options of its Transformer blocks."""

    # Width of every residual stream (embeddings, attention and block outputs).
    d_model: int = 128
    # Attention heads; each head has d_model // num_heads dimensions.
    num_heads: int = 4
    # Inner width of the position-wise feed-forward network.
    ffn_dim: int = 256
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
    max_length: int = 128
    # Output projection is the transposed (target) embedding matrix.
    tie_output_embeddings: bool = True
    # Epsilon of every LayerNormalization.
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self) -> None:
        _require_positive(self, "d_model", "num_heads", "ffn_dim", "max_length")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={self.d_model} "
                f"and num_heads={self.num_heads}"
            )
        _require_rate(self, "dropout", "attention_dropout")
        _require_choice(self, "activation", ("relu", "gelu"))
        _require_choice(self, "position_encoding", ("sinusoidal", "learned"))
        if self.layer_norm_epsilon <= 0:
            raise ValueError(
                f"layer_norm_epsilon must be positive, got {self.layer_norm_epsilon!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def block_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `layers.TransformerBlock` these sizes give."""
        return dict(
            d_model=self.d_model,
            num_heads=self.num_heads,
            ffn_dim=self.ffn_dim,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation=self.activation,
            normalize_first=self.normalize_first,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )

    @classmethod
    def preset(cls, name: str, **overrides: Any):
        """A named architecture of this family (see `PRESETS`), fields overridden by keyword."""
        presets = PRESETS[cls.__name__]
        if name not in presets:
            raise ValueError(f"Unknown model preset {name!r}; choose one of {sorted(presets)}")
        return from_dict(cls, {**presets[name], **overrides}, where="model.")


@dataclasses.dataclass(frozen=True)
class ModelConfig(BlockConfig):
    """The encoder-decoder Transformer (Vaswani et al., 2017): task `translation`."""

    # Source vocabulary size, special ids included; `train` sets it from the tokenizer.
    source_vocab_size: int = 8000
    # Target vocabulary size (set by `train` from the tokenizer); must equal
    # source_vocab_size when share_embeddings.
    target_vocab_size: int = 8000
    # Number of encoder blocks.
    num_encoder_layers: int = 2
    # Number of decoder blocks.
    num_decoder_layers: int = 2
    # One embedding matrix for source and target tokens (joint vocabulary).
    share_embeddings: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(
            self,
            "source_vocab_size",
            "target_vocab_size",
            "num_encoder_layers",
            "num_decoder_layers",
        )
        if self.share_embeddings and self.source_vocab_size != self.target_vocab_size:
            raise ValueError(
                "share_embeddings=True needs source_vocab_size == target_vocab_size, got "
                f"source_vocab_size={self.source_vocab_size} and "
                f"target_vocab_size={self.target_vocab_size}"
            )


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig(BlockConfig):
    """A decoder-only language model (GPT-style, causal blocks): task `language_model`."""

    # Vocabulary size, special ids included; `train` sets it from the tokenizer.
    vocab_size: int = 8000
    # Number of causal blocks.
    num_layers: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "vocab_size", "num_layers")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(BlockConfig):
    """An encoder and a dense head over pooled states: task `classification`."""

    # Vocabulary size, special ids included; `train` sets it from the tokenizer.
    vocab_size: int = 8000
    # Number of encoder blocks.
    num_layers: int = 2
    # Classes; `train` sets it from the training file's labels.
    num_classes: int = 2
    # "mean" over the real (non-PAD) tokens, or the "first" token's state.
    pooling: str = "mean"
    # Dropout on the pooled state before the dense head.
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_positive(self, "vocab_size", "num_layers")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes!r}")
        _require_choice(self, "pooling", ("mean", "first"))
        _require_rate(self, "head_dropout")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, distribution and run-directory behaviour of `train`."""

    # Optimizer steps in total (restarting resumes towards the same number).
    steps: int = 900
    # Steps between validations; each is one Keras "epoch" in the progress bar.
    eval_every: int = 300
    # "adam" or "adamw" (decoupled weight decay).
    optimizer: str = "adam"
    # Learning rate at the end of warmup; then it decays as 1/sqrt(step).
    peak_learning_rate: float = 2e-3
    # Steps of linear learning-rate warmup.
    warmup_steps: int = 300
    # Adam's first-moment decay rate.
    beta_1: float = 0.9
    # Adam's second-moment decay rate (0.98 as in Vaswani et al.).
    beta_2: float = 0.98
    # Adam's epsilon.
    epsilon: float = 1e-9
    # AdamW weight decay (ignored by adam).
    weight_decay: float = 0.0
    # Clip gradients to this global norm; 0 disables clipping.
    clip_norm: float = 1.0
    # Accumulate gradients over this many batches before each update.
    gradient_accumulation_steps: int = 1
    # Probability mass spread uniformly over the vocabulary in the loss.
    label_smoothing: float = 0.1
    # "float32", "mixed_bfloat16", "mixed_float16" (with loss scaling), or "auto":
    # bfloat16 on TPU, float16 on GPU, float32 on CPU.
    precision: str = "auto"
    # Compile the training step with XLA.
    jit_compile: bool = True
    # Training steps run per call into the compiled function (fewer host round trips).
    steps_per_execution: int = 1
    # "auto", "tpu", "multi_worker", "mirrored" or "default" (see training/strategy.py).
    strategy: str = "auto"
    # Seed for weights, shuffling and dropout.
    seed: int = 0
    # Steps between BackupAndRestore saves (rerun the same command to resume).
    backup_every: int = 100
    # Stop after this many validations without a better BLEU; 0 never stops early.
    early_stopping_patience: int = 0
    # Average the weights of the last N validation checkpoints at the end; 0 or 1: off.
    average_last: int = 0
    # Validation sentences translated (greedy) to compute BLEU at each validation.
    bleu_sentences: int = 100
    # A run directory to start from (fine-tuning): translation takes its whole
    # encoder-decoder, classification its encoder; the vocabulary comes from it. "": none.
    init_from: str = ""
    # Comma-separated layer names (or name prefixes, e.g. "encoder,token_embedding")
    # whose weights stay fixed during training. "": everything trains.
    frozen_layers: str = ""

    def __post_init__(self) -> None:
        _require_positive(
            self,
            "steps",
            "eval_every",
            "warmup_steps",
            "gradient_accumulation_steps",
            "steps_per_execution",
            "backup_every",
            "bleu_sentences",
        )
        _require_choice(self, "optimizer", ("adam", "adamw"))
        _require_choice(self, "precision", ("auto", "float32", "mixed_bfloat16", "mixed_float16"))
        _require_choice(self, "strategy", STRATEGY_CHOICES)
        _require_rate(self, "label_smoothing", "beta_1", "beta_2")
        if self.peak_learning_rate <= 0:
            raise ValueError(
                f"peak_learning_rate must be positive, got {self.peak_learning_rate!r}"
            )
        for name in ("clip_norm", "weight_decay", "early_stopping_patience", "average_last"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


# Architectures by name, per model family. `base` and `big` are Vaswani et al. (2017),
# Table 3; the language model's `gpt2` is GPT-2 small's shape (Radford et al., 2019).
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
LANGUAGE_MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=128, num_heads=4, ffn_dim=256, num_layers=2),
    "small": dict(d_model=256, num_heads=4, ffn_dim=1024, num_layers=4),
    "gpt2": dict(
        d_model=768,
        num_heads=12,
        ffn_dim=3072,
        num_layers=12,
        activation="gelu",
        position_encoding="learned",
        max_length=1024,
        layer_norm_epsilon=1e-5,
    ),
}
# A classifier's encoder has the shape of the encoder-decoder preset of the same name,
# so that it can start from a pretrained encoder-decoder of that preset.
CLASSIFIER_PRESETS: dict[str, dict[str, Any]] = {
    name: {
        **{key: value for key, value in preset.items() if "_layers" not in key},
        "num_layers": preset["num_encoder_layers"],
    }
    for name, preset in MODEL_PRESETS.items()
}
PRESETS = {
    "ModelConfig": MODEL_PRESETS,
    "LanguageModelConfig": LANGUAGE_MODEL_PRESETS,
    "ClassifierConfig": CLASSIFIER_PRESETS,
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where parallel text comes from and how it becomes batches (see tf_transformer.data)."""

    # Corpus: "synthetic" (built in, offline), "tfds", "files" or "multi30k".
    source: str = "synthetic"
    # TFDS translation dataset as "name/config", e.g. "wmt14_translate/de-en" (source "tfds").
    tfds_name: str = ""
    # Directory TFDS reads prepared data from; "" uses TFDS's default (~/tensorflow_datasets).
    tfds_data_dir: str = ""
    # Corpus directory (source "files": SPLIT.LANG, SPLIT.LANG.gz, SPLIT.tsv or SPLIT.tsv.gz
    # for SPLIT in train/validation/test; source "multi30k": its raw train/val/test_2016_flickr).
    data_dir: str = ""
    # Source language: a TFDS feature key or a file suffix ("en" for train.en).
    source_language: str = "en"
    # Target language, same convention as source_language.
    target_language: str = "de"
    # Train on the first N training pairs (or lines) of the corpus only; 0: all of them.
    train_examples: int = 0
    # Seed that generates the synthetic corpus (source "synthetic").
    synthetic_seed: int = 0
    # Synthetic training pairs.
    synthetic_train_size: int = 20_000
    # Synthetic validation pairs, and as many test pairs; no pair is in two splits.
    synthetic_eval_size: int = 500
    # Path prefix of the SentencePiece model: PREFIX.model when joint_vocabulary, else
    # PREFIX.SOURCE_LANGUAGE.model and PREFIX.TARGET_LANGUAGE.model.
    vocabulary_prefix: str = "runs/vocabulary/sentencepiece"
    # Pieces per vocabulary, the special ids PAD=0 UNK=1 BOS=2 EOS=3 included. 1000 BPE
    # pieces give about one per word form of the synthetic corpus (~1000 forms; it allows
    # at most ~500 unigram pieces); Multi30k-sized corpora want ~8000.
    vocab_size: int = 1000
    # SentencePiece algorithm: "unigram" or "bpe".
    vocab_model_type: str = "bpe"
    # One vocabulary for both languages (for ModelConfig.share_embeddings); else one each.
    joint_vocabulary: bool = True
    # Sentinel pieces <extra_id_0>, <extra_id_1>, ... reserved when the vocabulary is
    # trained, after one <mask> piece (ids MASK and FIRST_SENTINEL on, see constants.py;
    # text never produces them). Denoising pretraining needs them; 0 reserves nothing.
    extra_ids: int = 0
    # Longest sequence kept, in tokens with EOS (source) or BOS (target); longer pairs are
    # dropped and counted, like pairs with an empty side.
    max_length: int = 64
    # Tokens in one global batch (batch size * padded length), split evenly over replicas.
    batch_tokens: int = 2048
    # Shortest bucket length; bucket lengths grow from here to max_length.
    min_bucket_length: int = 16
    # Ratio between consecutive bucket lengths (> 1): larger means fewer batch shapes
    # (faster XLA / TPU compilation) and more padding.
    bucket_growth: float = 2.0
    # Pairs held in the shuffle buffer.
    shuffle_buffer_size: int = 100_000
    # Seed of the shuffle order; reshuffled every epoch, the same way on every run (a
    # resumed run reshuffles from the step it resumes at).
    shuffle_seed: int = 0
    # Pad every batch to its bucket length, so batch shapes come from a small fixed set
    # (pipeline.static_batch_shapes): for TPU / XLA. Training drops partial batches;
    # evaluation fills the last batch of a bucket with padding rows that count zero.
    static_shapes: bool = True
    # Where the tokenized examples are cached, per input pipeline (after sharding):
    # "memory", "none" (tokenize again every epoch), or a file path prefix (local or a
    # URL such as gs://bucket/cache/wmt14) for corpora larger than memory. A complete file
    # cache is read as it is: delete it after changing the corpus or the vocabulary.
    cache: str = "memory"

    def __post_init__(self) -> None:
        _require_choice(self, "source", ("synthetic", "tfds", "files", "multi30k"))
        _require_positive(
            self,
            "synthetic_train_size",
            "synthetic_eval_size",
            "vocab_size",
            "max_length",
            "batch_tokens",
            "min_bucket_length",
            "shuffle_buffer_size",
        )
        _require_choice(self, "vocab_model_type", ("unigram", "bpe"))
        if self.source == "tfds" and not self.tfds_name:
            raise ValueError('source="tfds" needs tfds_name, e.g. "wmt14_translate/de-en"')
        if self.source in ("files", "multi30k") and not self.data_dir:
            raise ValueError(f"source={self.source!r} needs data_dir")
        if self.source_language == self.target_language:
            raise ValueError(
                f"source_language and target_language must differ, both are "
                f"{self.source_language!r}"
            )
        for name in ("extra_ids", "train_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.bucket_growth <= 1.0:
            raise ValueError(f"bucket_growth must be > 1, got {self.bucket_growth!r}")
        if self.min_bucket_length > self.max_length:
            raise ValueError(
                f"min_bucket_length ({self.min_bucket_length}) must not exceed "
                f"max_length ({self.max_length})"
            )
        if self.batch_tokens < self.max_length:
            raise ValueError(
                f"batch_tokens ({self.batch_tokens}) must be at least max_length "
                f"({self.max_length}), or the longest pairs would fit in no batch"
            )
        if self.cache not in ("memory", "none") and (
            "/" not in self.cache or self.cache.endswith("/") or self.cache != self.cache.strip()
        ):
            raise ValueError(
                'cache must be "memory", "none" or a file path prefix with a "/" such as '
                "./wmt14, /tmp/cache/wmt14 or gs://bucket/cache/wmt14 "
                f"(files PREFIX.NAME.shard-I-of-N.*), got {self.cache!r}"
            )


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How translations are generated (tf_transformer.decoding)."""

    # Beams per sentence; 1 is greedy search (unless `sample`).
    beam_size: int = 1
    # GNMT length penalty alpha: scores are log P / ((5 + length) / 6) ** alpha; 0 turns it off.
    length_penalty: float = 0.6
    # Sample tokens instead of searching (beam_size must then be 1).
    sample: bool = False
    # Sampling temperature: logits are divided by it.
    temperature: float = 1.0
    # Sample only among the k most likely tokens; 0 means no limit.
    top_k: int = 0
    # Sample only among the smallest set of tokens whose probability reaches p; 1.0: no limit.
    top_p: float = 1.0
    # Seed of the sampler: the same seed gives the same samples.
    seed: int = 0
    # Hypotheses returned per sentence: the n best beams, or n samples.
    num_return_sequences: int = 1
    # Output length limit: max_length tokens if > 0, else max_length_a * source length +
    # max_length_b; always within the model's max_length.
    max_length: int = 0
    max_length_a: float = 2.0
    max_length_b: int = 10
    # Sentences per generation call.
    batch_size: int = 64
    # When beam search stops a sentence: "beams_finished" once beam_size hypotheses
    # have finished (as CTranslate2 and Hugging Face), or "exact" once no live beam can
    # beat the worst finished one even at the length limit (flax; slower).
    stop_rule: str = "beams_finished"

    def __post_init__(self) -> None:
        _require_positive(self, "beam_size", "num_return_sequences", "batch_size")
        _require_choice(self, "stop_rule", ("beams_finished", "exact"))
        if self.sample and self.beam_size != 1:
            raise ValueError(f"sample=True needs beam_size=1, got beam_size={self.beam_size}")
        if not self.sample and self.num_return_sequences > self.beam_size:
            raise ValueError(
                f"num_return_sequences={self.num_return_sequences} exceeds "
                f"beam_size={self.beam_size}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("top_k", "max_length", "max_length_b", "length_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_length_a < 0:
            raise ValueError(f"max_length_a must be >= 0, got {self.max_length_a!r}")


@dataclasses.dataclass(frozen=True)
class DenoisingConfig:
    """The self-supervised objective of task `denoising` (see data/noising.py)."""

    # "span_corruption" (T5) or "text_infilling" (BART).
    objective: str = "span_corruption"
    # Span corruption: share of the tokens dropped, and the mean length of a dropped span.
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    # Text infilling: share of the tokens masked, and the Poisson mean of a span's length.
    mask_ratio: float = 0.3
    poisson_lambda: float = 3.5
    # Comma-separated languages of the corpus to pretrain on, each a monolingual corpus
    # shuffled on its own (so no pairing leaks), e.g. "en,de"; "": data.source_language.
    languages: str = ""
    # Comma-separated text files (plain or .gz, local or URLs), one sentence per line,
    # added to the training text (and the vocabulary's), each shuffled on its own.
    extra_text_files: str = ""

    def __post_init__(self) -> None:
        _require_choice(self, "objective", ("span_corruption", "text_infilling"))
        for name in ("noise_density", "mask_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        for name in ("mean_noise_span_length", "poisson_lambda"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def language_list(self, data: DataConfig) -> tuple[str, ...]:
        """The languages to pretrain on."""
        return _comma_separated(self.languages) or (data.source_language,)

    def extra_text_paths(self) -> tuple[str, ...]:
        return _comma_separated(self.extra_text_files)


def _comma_separated(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


# The model config of each task (the YAML's top-level `task:` key; default translation).
TASK_MODEL_CONFIGS: dict[str, type[BlockConfig]] = {
    "translation": ModelConfig,
    "language_model": LanguageModelConfig,
    "classification": ClassifierConfig,
    "denoising": ModelConfig,
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole run: what to train, on which data, and how. YAML: a top-level `task:`
    key (`translation`, the default, `language_model`, `classification` or `denoising`),
    and sections `model` (the task's model config, with an optional `preset` key that the
    other keys override), `data`, `train`, `decode`, `denoising` (task denoising only)."""

    task: str = "translation"
    model: BlockConfig = dataclasses.field(default_factory=lambda: ModelConfig.preset("tiny"))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    denoising: DenoisingConfig = dataclasses.field(default_factory=DenoisingConfig)

    def __post_init__(self) -> None:
        _require_choice(self, "task", tuple(TASK_MODEL_CONFIGS))
        model_class = TASK_MODEL_CONFIGS[self.task]
        if type(self.model) is not model_class:
            raise ValueError(
                f"task {self.task!r} needs a {model_class.__name__} model section, "
                f"got {type(self.model).__name__}"
            )
        if self.model.max_length < self.data.max_length:
            raise ValueError(
                f"model.max_length ({self.model.max_length}) must be at least "
                f"data.max_length ({self.data.max_length}): the longest bucket pads "
                "sequences to data.max_length tokens"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExperimentConfig:
        sections = {field.name for field in dataclasses.fields(cls)} - {"task"}
        unknown = sorted(set(values) - sections - {"task"})
        if unknown:
            raise ValueError(
                f"Unknown config section {unknown[0]!r}; "
                f"valid sections: {', '.join(sorted(sections))} (and the key task)"
            )
        for name in sections:
            if not isinstance(values.get(name) or {}, Mapping):
                raise ValueError(f"Config section {name!r} must be a mapping of keys to values")
        task = values.get("task") or "translation"
        if task not in TASK_MODEL_CONFIGS:
            raise ValueError(f"task must be one of {tuple(TASK_MODEL_CONFIGS)}, got {task!r}")
        model_values = dict(values.get("model") or {})
        model_class = TASK_MODEL_CONFIGS[task]
        return cls(
            task=task,
            model=model_class.preset(model_values.pop("preset", "tiny"), **model_values),
            data=from_dict(DataConfig, values.get("data") or {}, where="data."),
            train=from_dict(TrainConfig, values.get("train") or {}, where="train."),
            decode=from_dict(DecodeConfig, values.get("decode") or {}, where="decode."),
            denoising=from_dict(DenoisingConfig, values.get("denoising") or {}, where="denoising."),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RUN_CONFIG = "config.yaml"
# The vocabulary's prefix inside a run directory, as config.yaml records it (relative
# to the run, so a run can be moved or copied to a bucket and still load).
RUN_VOCABULARY_PREFIX = "sentencepiece"


def _read_text(path: str) -> str:
    import tensorflow as tf  # here, not at the top: config errors come before the slow import

    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    with tf.io.gfile.GFile(path, "r") as file:
        return file.read()


def load(config_files: Iterable[str] = (), overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Reads YAML files (local or any tf.io.gfile URL; later ones override earlier ones,
    key by key), then applies ``section.key=value`` overrides (values parsed as YAML:
    ``train.steps=100``; ``task=language_model`` sets the task)."""
    merged: dict[str, Any] = {}
    for path in map(str, config_files):
        try:
            values = yaml.safe_load(_read_text(path)) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(values, Mapping):
            raise ValueError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
        for section, section_values in values.items():
            if section == "task":
                merged["task"] = section_values
                continue
            if not isinstance(section_values, Mapping):
                raise ValueError(f"{path}: section {section!r} must be a mapping of keys to values")
            merged.setdefault(section, {}).update(section_values)
    for override in overrides:
        key, separator, value = override.partition("=")
        if key.strip() == "task" and separator:
            merged["task"] = yaml.safe_load(value)
            continue
        section, dot, field_name = key.strip().partition(".")
        if not separator or not dot or not field_name:
            raise ValueError(f"Override {override!r} must look like section.key=value")
        merged.setdefault(section, {})[field_name] = yaml.safe_load(value)
    return ExperimentConfig.from_dict(merged)


def save(config: ExperimentConfig, path: str) -> None:
    """Writes the fully resolved config as YAML that `load` reads back to the same config."""
    import tensorflow as tf  # here, not at the top: config errors come before the slow import

    with tf.io.gfile.GFile(str(path), "w") as file:
        file.write(yaml.safe_dump(config.to_dict(), sort_keys=False))


def join_path(directory: str, name: str) -> str:
    """`directory`/`name` for a local path or a URL (gs://, ram://): never `pathlib`,
    which folds "gs://bucket" into "gs:/bucket"."""
    return f"{str(directory).rstrip('/')}/{name}"


def base_name(path: str) -> str:
    """The last part of a local path or a URL, as `join_path` joins them."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def is_relative_path(path: str) -> bool:
    """True for a path relative to some directory: neither absolute nor a URL."""
    return "://" not in path and not path.startswith("/")


def make_parent_directory(path: str) -> None:
    """Creates the directory that will hold `path` (local or a URL), if it has one."""
    import tensorflow as tf  # here, not at the top: config errors come before the slow import

    directory = path.rstrip("/").rpartition("/")[0]
    if directory and not directory.endswith(":/"):  # not a bare "gs://" or "ram://"
        tf.io.gfile.makedirs(directory)


def resolve_in_run(experiment: ExperimentConfig, run_dir: str) -> ExperimentConfig:
    """`experiment` with the paths it records relative to a run (the vocabulary)
    resolved against `run_dir`, wherever the run now lives."""
    prefix = experiment.data.vocabulary_prefix
    if not is_relative_path(prefix):
        return experiment
    data = dataclasses.replace(experiment.data, vocabulary_prefix=join_path(run_dir, prefix))
    return dataclasses.replace(experiment, data=data)


def load_run(run_dir: str) -> ExperimentConfig:
    """The config of a training run, its run-relative paths resolved (`resolve_in_run`)."""
    return resolve_in_run(load([join_path(run_dir, RUN_CONFIG)]), run_dir)
