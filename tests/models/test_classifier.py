"""The encoder classifier: padding invariance, pooling, weights from a pretrained encoder."""

from __future__ import annotations

import numpy as np
import pytest

from tf_transformer.config import ClassifierConfig, ModelConfig
from tf_transformer.models import Seq2SeqTransformer, TransformerClassifier
from tf_transformer.models.transfer import copy_layer_weights, encoder_layers

VOCAB = 50


def classifier(**overrides) -> TransformerClassifier:
    config = ClassifierConfig.preset("tiny", vocab_size=VOCAB, num_classes=3, **overrides)
    model = TransformerClassifier(config)
    model.build()
    return model


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_probabilities_do_not_change_with_extra_padding(pooling):
    model = classifier(pooling=pooling)
    token_ids = np.array([[7, 8, 9, 3, 0, 0], [11, 3, 0, 0, 0, 0]], np.int32)
    padded = np.pad(token_ids, [[0, 0], [0, 26]])
    probabilities = [
        np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        for logits in (np.asarray(model(ids)) for ids in (token_ids, padded))
    ]
    assert probabilities[0].shape == (2, 3)
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-5, rtol=0)


def test_mean_pooling_averages_the_real_tokens_only():
    model = classifier()
    token_ids = np.array([[7, 8, 3, 0]], np.int32)
    pooled = np.asarray(model.pooled(token_ids, training=False))
    alone = np.asarray(model.pooled(token_ids[:, :3], training=False))
    np.testing.assert_allclose(pooled, alone, atol=1e-5)


def test_the_encoder_of_a_seq2seq_model_initializes_the_classifier():
    seq2seq = Seq2SeqTransformer(
        ModelConfig.preset("tiny", source_vocab_size=VOCAB, target_vocab_size=VOCAB)
    )
    seq2seq.build()
    model = classifier()
    copied = copy_layer_weights(encoder_layers(model), encoder_layers(seq2seq), "pretrained")
    assert copied == sum(
        int(np.prod(weight.shape)) for _, layer in encoder_layers(model) for weight in layer.weights
    )
    token_ids = np.array([[7, 8, 9, 3, 0]], np.int32)
    encoded = np.asarray(seq2seq.encode(token_ids, training=False))[:, :4].mean(axis=1)
    np.testing.assert_allclose(
        np.asarray(model.pooled(token_ids, training=False)), encoded, atol=1e-5
    )


def test_a_shape_mismatch_names_the_layer_and_both_shapes():
    seq2seq = Seq2SeqTransformer(
        ModelConfig.preset("small", source_vocab_size=VOCAB, target_vocab_size=VOCAB)
    )
    seq2seq.build()
    with pytest.raises(
        ValueError,
        match=r"layer source_embedding from runs/pre: weight embedding/embeddings has shape "
        r"\(50, 256\) there and \(50, 128\) here",
    ):
        copy_layer_weights(encoder_layers(classifier()), encoder_layers(seq2seq), "runs/pre")
    deeper = classifier(num_layers=4, d_model=256, num_heads=4, ffn_dim=1024)
    with pytest.raises(ValueError, match="runs/pre has no layer 'encoder_block_3'"):
        copy_layer_weights(encoder_layers(deeper), encoder_layers(seq2seq), "runs/pre")


def test_frozen_layers_keep_their_weights_out_of_training():
    from tf_transformer.training.fit import freeze_layers

    model = classifier()
    all_weights = len(model.trainable_weights)
    frozen = freeze_layers(model, "encoder_block, source_embedding")
    assert frozen == ["encoder_block_0", "encoder_block_1", "source_embedding"]
    remaining = {weight.path.split("/")[1] for weight in model.trainable_weights}
    assert (
        remaining == {"encoder_final_norm", "head"} and len(model.trainable_weights) < all_weights
    )
    with pytest.raises(ValueError, match="no layer of TransformerClassifier is named 'decoder'"):
        freeze_layers(model, "decoder")
