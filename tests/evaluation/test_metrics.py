import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from tf_transformer.constants import EOS, PAD
from tf_transformer.evaluation.metrics import corpus_scores, perplexity


def test_corpus_scores_are_sacrebleus():
    hypotheses = ["Der Hund sieht den Ball.", "Ein Kind spielt."]
    references = ["Der Hund sieht den Ball.", "Ein Kind spielt draußen."]
    scores = corpus_scores(hypotheses, references)
    assert scores["bleu"] == round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert corpus_scores(references, references)["bleu"] == 100.0


def test_corpus_scores_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="2 translations but 1 references"):
        corpus_scores(["a", "b"], ["a"])


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    class UniformModel:
        def __call__(self, features, training=False):
            batch, length = features["decoder_inputs"].shape
            return tf.zeros((batch, length, 7))

    targets = np.array([[4, 5, EOS], [6, EOS, PAD]], "int32")
    features = {"encoder_inputs": targets, "decoder_inputs": targets}
    batches = tf.data.Dataset.from_tensors((features, targets))
    assert perplexity(UniformModel(), batches) == pytest.approx(7.0, rel=1e-5)
