from __future__ import annotations

import dataclasses
import functools
import logging

import pytest
import tensorflow as tf

from tf_transformer.config import DataConfig
from tf_transformer.constants import BOS, EOS, PAD
from tf_transformer.data import pipeline, sources, synthetic, tokenizer

# Explicit values for everything make_dataset reads: the tests do not follow the defaults.
SMALL = DataConfig(
    max_length=64,
    batch_tokens=512,
    min_bucket_length=8,
    bucket_growth=1.5,
    shuffle_buffer_size=500,
    static_shapes=False,
)
# The acceptance setting for Multi30k: 4,096-token batches in fine buckets, padded per batch.
MULTI30K_BATCHING = dict(
    max_length=128, batch_tokens=4096, min_bucket_length=8, bucket_growth=1.1, static_shapes=False
)


def string_pairs(pairs: list[tuple[str, str]]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs, strict=True))))


@pytest.fixture
def synthetic_examples(synthetic_tokenizer) -> pipeline.TokenizedPairs:
    pairs = string_pairs(synthetic.generate_pairs(600, seed=11))
    return pipeline.tokenize_pairs(pairs, synthetic_tokenizer, synthetic_tokenizer, max_length=64)


def encoder_rows(batches: tf.data.Dataset) -> list[tuple[int, ...]]:
    """Every encoder_inputs row of `batches`, without padding, sorted."""
    rows = []
    for features, _ in batches.as_numpy_iterator():
        rows += [tuple(int(i) for i in row if i != PAD) for row in features["encoder_inputs"]]
    return sorted(rows)


def test_batches_follow_the_model_contract(synthetic_tokenizer, synthetic_processor):
    pairs = [("My dog sleeps.", "Mein Hund schläft."), ("I see a cat.", "Ich sehe eine Katze.")]
    tokenized = pipeline.tokenize_pairs(
        string_pairs(pairs), synthetic_tokenizer, synthetic_tokenizer, 32
    )
    one_bucket = dataclasses.replace(SMALL, min_bucket_length=SMALL.max_length)
    [(features, targets)] = pipeline.make_dataset(tokenized.dataset, one_bucket, training=False)
    assert sorted(features) == ["decoder_inputs", "encoder_inputs"]
    assert {tensor.dtype for tensor in (*features.values(), targets)} == {tf.int32}

    def padded(rows: list[list[int]]) -> list[list[int]]:
        width = max(map(len, rows))
        return [row + [PAD] * (width - len(row)) for row in rows]

    sources_ids = synthetic_processor.encode([source for source, _ in pairs])
    target_ids = synthetic_processor.encode([target for _, target in pairs])
    assert features["encoder_inputs"].numpy().tolist() == padded([s + [EOS] for s in sources_ids])
    assert features["decoder_inputs"].numpy().tolist() == padded([[BOS] + t for t in target_ids])
    assert targets.numpy().tolist() == padded([t + [EOS] for t in target_ids])


def test_empty_and_too_long_pairs_are_dropped_counted_and_logged(synthetic_tokenizer, caplog):
    pairs = [
        ("The dog sleeps.", "Der Hund schläft."),
        ("", "Die Katze singt."),
        ("The cat sings.", "   "),
        (" ".join(["The big red dog sleeps."] * 8), "Der Hund schläft."),
        ("I sing.", "Ich singe."),
    ]
    with caplog.at_level(logging.WARNING, logger="tf_transformer.data.pipeline"):
        tokenized = pipeline.tokenize_pairs(
            string_pairs(pairs), synthetic_tokenizer, synthetic_tokenizer, 32, name="train"
        )
    assert tokenized.report == pipeline.FilterReport(kept=2, dropped_empty=2, dropped_too_long=1)
    assert caplog.messages == [
        "train: kept 2 pairs; dropped 2 with an empty side and 1 longer than 32 tokens"
    ]
    kept_sources = [
        synthetic_tokenizer.detokenize(features["encoder_inputs"]).numpy()
        for features, _ in tokenized.dataset
    ]
    assert kept_sources == [b"The dog sleeps.", b"I sing."]


def test_max_length_counts_the_special_ids(synthetic_tokenizer, synthetic_processor):
    source = "The dog sleeps."
    length = len(synthetic_processor.encode(source)) + 1  # with EOS
    pairs = string_pairs([(source, source)])
    fits = pipeline.tokenize_pairs(pairs, synthetic_tokenizer, synthetic_tokenizer, length)
    too_long = pipeline.tokenize_pairs(pairs, synthetic_tokenizer, synthetic_tokenizer, length - 1)
    assert (fits.report.kept, too_long.report.dropped_too_long) == (1, 1)


def test_bucket_lengths_grow_to_max_length():
    assert pipeline.bucket_lengths(SMALL) == [8, 12, 18, 27, 40, 60, 64]
    fine = dataclasses.replace(SMALL, max_length=24, bucket_growth=1.1)
    assert pipeline.bucket_lengths(fine) == [
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        22,
        24,
    ]


def test_batches_stay_within_the_token_budget_and_keep_every_pair(synthetic_examples):
    batches = pipeline.make_dataset(synthetic_examples.dataset, SMALL)
    for features, targets in batches.as_numpy_iterator():
        length = max(features["encoder_inputs"].shape[1], targets.shape[1])
        assert targets.shape[0] * length <= SMALL.batch_tokens
    expected = encoder_rows(synthetic_examples.dataset.padded_batch(100))
    assert len(expected) == synthetic_examples.report.kept == 600
    assert encoder_rows(batches) == expected


def test_shuffling_is_seeded_and_changes_every_epoch(synthetic_examples):
    def epochs(config: DataConfig, count: int = 2) -> list[list[list[int]]]:
        batches = pipeline.make_dataset(synthetic_examples.dataset, config)
        return [
            [features["encoder_inputs"][0].tolist() for features, _ in batches.as_numpy_iterator()]
            for _ in range(count)
        ]

    first_run, second_run = epochs(SMALL), epochs(SMALL)
    assert first_run == second_run
    assert first_run[0] != first_run[1]
    assert epochs(dataclasses.replace(SMALL, shuffle_seed=1), 1)[0] != first_run[0]


def test_static_shapes_come_from_the_declared_set(synthetic_examples):
    config = dataclasses.replace(SMALL, static_shapes=True)
    declared = pipeline.static_batch_shapes(config)
    assert declared == [(64, 8), (42, 12), (28, 18), (18, 27), (12, 40), (8, 60), (8, 64)]
    seen = set()
    for _ in range(2):
        for features, targets in pipeline.make_dataset(synthetic_examples.dataset, config):
            shapes = {tuple(tensor.shape) for tensor in (*features.values(), targets)}
            assert len(shapes) == 1  # encoder and decoder padded to the bucket length
            seen |= shapes
    assert seen <= set(declared)
    assert len(seen) >= 2


def test_static_shapes_for_evaluation_keep_every_pair(synthetic_examples):
    config = dataclasses.replace(SMALL, static_shapes=True)
    declared_lengths = {length for _, length in pipeline.static_batch_shapes(config)}
    rows = 0
    for features, targets in pipeline.make_dataset(
        synthetic_examples.dataset, config, training=False
    ):
        assert targets.shape[1] in declared_lengths
        assert features["encoder_inputs"].shape == targets.shape
        rows += targets.shape[0]
    assert rows == 600


def test_shards_are_disjoint_and_use_the_per_replica_budget(synthetic_examples):
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        batches = pipeline.make_dataset(synthetic_examples.dataset, SMALL, context)
        for features, targets in batches.as_numpy_iterator():
            length = max(features["encoder_inputs"].shape[1], targets.shape[1])
            assert targets.shape[0] * length <= SMALL.batch_tokens // 2
        shards.append(encoder_rows(batches))
    assert len(shards[0]) + len(shards[1]) == 600
    assert sorted(shards[0] + shards[1]) == encoder_rows(
        synthetic_examples.dataset.padded_batch(100)
    )
    assert not set(shards[0]) & set(shards[1])


def test_distribute_datasets_from_function_batches_per_replica(
    synthetic_examples, two_cpu_strategy
):
    config = dataclasses.replace(SMALL, static_shapes=True)
    distributed = two_cpu_strategy.distribute_datasets_from_function(
        functools.partial(pipeline.make_dataset, synthetic_examples.dataset, config)
    )
    features, targets = next(iter(distributed))
    per_replica_shapes = {
        tuple(t.shape) for t in two_cpu_strategy.experimental_local_results(targets)
    }
    assert per_replica_shapes <= set(
        pipeline.static_batch_shapes(dataclasses.replace(config, batch_tokens=256))
    )


def test_replica_budget_below_max_length_is_refused():
    context = tf.distribute.InputContext(num_replicas_in_sync=16)
    with pytest.raises(ValueError) as error:
        pipeline.replica_batch_tokens(SMALL, context)
    assert str(error.value) == (
        "batch_tokens=512 over 16 replicas leaves 32 tokens per replica, fewer than max_length=64"
    )


def test_real_token_share_counts_padding():
    features = {
        "encoder_inputs": tf.constant([[5, 6, EOS], [5, EOS, PAD]]),
        "decoder_inputs": tf.constant([[BOS, 7, PAD, PAD], [BOS, 7, 8, 9]]),
    }
    targets = tf.constant([[7, EOS, PAD, PAD], [7, 8, 9, EOS]])
    batches = tf.data.Dataset.from_tensors((features, targets))
    # Non-PAD: 3 + 2 encoder, 2 + 4 targets, of 6 + 8.
    assert pipeline.real_token_share(batches) == pytest.approx(11 / 14)


def multi30k_real_token_shares(data_dir, model_path) -> tuple[float, float]:
    """Real-token share of Multi30k train in 4,096-token buckets and in batches of 64."""
    config = DataConfig(source="multi30k", data_dir=str(data_dir), **MULTI30K_BATCHING)
    multi30k_tokenizer = tokenizer.load_tokenizer(model_path)
    tokenized = pipeline.tokenize_pairs(
        sources.load_pairs(config, "train"), multi30k_tokenizer, multi30k_tokenizer, 128
    )
    assert tokenized.report == pipeline.FilterReport(29000, 0, 0)
    return (
        pipeline.real_token_share(pipeline.make_dataset(tokenized.dataset, config)),
        pipeline.real_token_share(tokenized.dataset.padded_batch(64)),
    )


def test_multi30k_bucketing_wastes_little_padding(multi30k_dir, multi30k_model_path):
    # A 500-piece vocabulary makes sequences long and varied; 8,000 pieces do better (below).
    bucketed, padded = multi30k_real_token_shares(multi30k_dir, multi30k_model_path)
    assert bucketed >= 0.85
    assert padded <= 0.55


@pytest.mark.slow
def test_multi30k_bucketing_with_a_joint_8k_vocabulary(multi30k_dir, tmp_path):
    config = DataConfig(
        source="multi30k",
        data_dir=str(multi30k_dir),
        vocab_size=8000,
        vocab_model_type="unigram",
        vocabulary_prefix=str(tmp_path / "multi30k"),
        **MULTI30K_BATCHING,
    )
    [summary] = tokenizer.build_vocabulary(config)
    bucketed, padded = multi30k_real_token_shares(multi30k_dir, summary.model_path)
    assert bucketed >= 0.90
    assert padded <= 0.55
