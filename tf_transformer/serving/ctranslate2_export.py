"""A translation run as a CTranslate2 model, for those who serve with CTranslate2.

CTranslate2's own converters read OpenNMT, fairseq, Marian or Hugging Face checkpoints,
not Keras models, so the weights go through its Python `TransformerSpec` API here (as
its `converters/opennmt_tf.py` does for OpenNMT-tf). What an exact conversion needs:

- the vocabulary is the SentencePiece pieces in id order (PAD, UNK, BOS, EOS first);
- sources end in EOS (`add_source_eos`), decoding starts from BOS;
- our sinusoid table interleaves sin and cos (`layers.positional.sinusoid_table`), so
  the table is written out instead of relying on CTranslate2's built-in sinusoid;
- the layer-norm epsilon is ours (CTranslate2 defaults to 1e-5).

At translation time, `ctranslate2_options` gives the settings that make CTranslate2
search as ours does: PAD and BOS suppressed and empty outputs allowed. Its length
penalty divides by ``L ** alpha`` where ours is GNMT's ``((5 + L) / 6) ** alpha``, so
beam search ranks hypotheses a little differently; greedy search is the same.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import sentencepiece
import tensorflow as tf

from tf_transformer.config import base_name, join_path, load_run
from tf_transformer.data.tokenizer import vocabulary_paths
from tf_transformer.models import Seq2SeqTransformer
from tf_transformer.models.base import load_run_model

# CTranslate2's quantizations of the weights (`ctranslate2.Translator(compute_type=...)`
# converts again at load time).
QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ImportError(
            "The CTranslate2 export needs the ctranslate2 package: "
            'pip install "tf_transformer[ctranslate2]"'
        ) from None
    return ctranslate2


def sentencepiece_pieces(model_path: str) -> list[str]:
    """The pieces of a SentencePiece model file (local or a URL), in id order."""
    with tf.io.gfile.GFile(model_path, "rb") as model_file:
        processor = sentencepiece.SentencePieceProcessor(model_proto=model_file.read())
    return [processor.id_to_piece(index) for index in range(processor.get_piece_size())]


def ctranslate2_options(max_length: int, beam_size: int = 1, length_penalty: float = 0.6):
    """Keyword arguments of `ctranslate2.Translator.translate_batch` for a search like
    ours: at most `max_length` generated tokens (EOS included), PAD and BOS never
    generated, the empty output allowed."""
    return dict(
        beam_size=beam_size,
        length_penalty=length_penalty if beam_size > 1 else 0.0,
        max_decoding_length=max_length,
        min_decoding_length=0,
        suppress_sequences=[["<pad>"], ["<s>"]],
    )


def ctranslate2_translate(
    translator,
    processor: sentencepiece.SentencePieceProcessor,
    sentences: list[str],
    max_length: int,
    source_max_length: int,
    beam_size: int = 1,
    length_penalty: float = 0.6,
    batch_size: int = 32,
) -> list[str]:
    """The translations of `sentences` by a `ctranslate2.Translator`, tokenized and
    detokenized with `processor` (the run's SentencePiece model) and searched with
    `ctranslate2_options`. As ours: sources are cut to `source_max_length` tokens with
    their EOS (the model's max_length), blank sentences give ""."""
    pieces = [
        processor.encode(sentence, out_type=str)[: source_max_length - 1] for sentence in sentences
    ]
    to_translate = [tokens for tokens in pieces if tokens]
    results = translator.translate_batch(
        to_translate,
        max_batch_size=batch_size,
        **ctranslate2_options(max_length, beam_size, length_penalty),
    )
    translations = iter(processor.decode_pieces(result.hypotheses[0]) for result in results)
    return [next(translations) if tokens else "" for tokens in pieces]


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy(), dtype=np.float32)


def _set_linear(spec, dense_layers) -> None:
    """Sets `spec` to the Keras Dense layers side by side along their outputs
    (CTranslate2 stores ``[out, in]``, Keras ``[in, out]``)."""
    spec.weight = np.concatenate([_numpy(layer.kernel).T for layer in dense_layers], axis=0)
    spec.bias = np.concatenate([_numpy(layer.bias) for layer in dense_layers])


def _set_layer_norm(spec, norm) -> None:
    spec.gamma = _numpy(norm.gamma)
    spec.beta = _numpy(norm.beta)


def _set_attention(spec, attention, norm, self_attention: bool) -> None:
    key_value = attention.key_value_projection
    if self_attention:  # one fused [3d, d] projection: queries, keys, values
        _set_linear(spec.linear[0], [attention.query_projection, key_value])
    else:  # queries [d, d] from the decoder, keys and values [2d, d] from the source
        _set_linear(spec.linear[0], [attention.query_projection])
        _set_linear(spec.linear[1], [key_value])
    _set_linear(spec.linear[-1], [attention.output_projection])
    _set_layer_norm(spec.layer_norm, norm)


def _set_block(spec, block) -> None:
    _set_attention(spec.self_attention, block.self_attention, block.attention_norm, True)
    if block.has_cross_attention:
        _set_attention(
            spec.attention, block.cross_attention, block.cross_attention_norm, self_attention=False
        )
    _set_linear(spec.ffn.linear_0, [block.feed_forward.inner])
    _set_linear(spec.ffn.linear_1, [block.feed_forward.outer])
    _set_layer_norm(spec.ffn.layer_norm, block.feed_forward_norm)


def _position_table(position_encoding) -> np.ndarray:
    if position_encoding.learned is not None:
        return _numpy(position_encoding.learned.position_embeddings)
    return np.asarray(position_encoding.table, dtype=np.float32)


def transformer_spec(model: Seq2SeqTransformer, source_pieces: list[str], target_pieces: list[str]):
    """The `ctranslate2.specs.TransformerSpec` of `model` with these vocabularies."""
    ctranslate2 = _ctranslate2()
    common_spec = ctranslate2.specs.common_spec
    config = model.config
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}[
        config.activation
    ]
    spec = ctranslate2.specs.TransformerSpec.from_config(
        (config.num_encoder_layers, config.num_decoder_layers),
        config.num_heads,
        pre_norm=config.normalize_first,
        activation=activation,
    )
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = config.layer_norm_epsilon
    spec.register_source_vocabulary(source_pieces)
    spec.register_target_vocabulary(target_pieces)

    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _numpy(model.source_embedding.embedding.embeddings)
    encoder.position_encodings.encodings = _position_table(model.position_encoding)
    for block_spec, block in zip(encoder.layer, model.encoder_blocks, strict=True):
        _set_block(block_spec, block)
    target_embeddings = _numpy(model.target_embedding.embedding.embeddings)
    decoder.embeddings.weight = target_embeddings
    decoder.position_encodings.encodings = _position_table(model.target_position_encoding)
    for block_spec, block in zip(decoder.layer, model.decoder_blocks, strict=True):
        _set_block(block_spec, block)
    if config.normalize_first:
        _set_layer_norm(encoder.layer_norm, model.encoder_final_norm)
        _set_layer_norm(decoder.layer_norm, model.decoder_final_norm)
    decoder.projection.weight = (
        target_embeddings
        if config.tie_output_embeddings
        else _numpy(model.target_embedding.embedding.reverse_embeddings).T
    )
    decoder.projection.bias = np.zeros(len(target_pieces), np.float32)
    return spec


def export_ctranslate2(run_dir: str, output_dir: str, quantization: str | None = None) -> str:
    """Converts the translation run `run_dir` into the CTranslate2 model directory
    `output_dir` (local or a URL; it must not exist yet), its SentencePiece model(s)
    beside the weights; returns `output_dir`."""
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    experiment = load_run(run_dir)
    if experiment.task != "translation":
        raise ValueError(
            f"{run_dir} is a {experiment.task} run: only translation runs convert to CTranslate2"
        )
    if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir):
        raise FileExistsError(f"{output_dir} exists and is not empty")
    _ctranslate2()  # a missing package is an error before the model loads
    source_path, target_path = vocabulary_paths(experiment.data)
    model = load_run_model(run_dir, Seq2SeqTransformer)
    spec = transformer_spec(
        model, sentencepiece_pieces(source_path), sentencepiece_pieces(target_path)
    )
    spec.validate()
    spec.optimize(quantization=quantization)
    # CTranslate2 writes to a local directory: write there, then copy (gs:// works).
    with tempfile.TemporaryDirectory() as local_dir:
        spec.save(local_dir)
        tf.io.gfile.makedirs(output_dir)
        for name in os.listdir(local_dir):
            tf.io.gfile.copy(
                os.path.join(local_dir, name), join_path(output_dir, name), overwrite=True
            )
    for path in dict.fromkeys((source_path, target_path)):
        tf.io.gfile.copy(path, join_path(output_dir, base_name(path)), overwrite=True)
    return output_dir
