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


STATIC = dataclasses.replace(SMALL, static_shapes=True)
# The input context of a pipeline that feeds both replicas of the two-CPU strategy.
TWO_REPLICAS = tf.distribute.InputContext(num_replicas_in_sync=2)


def examples_of_lengths(lengths: list[int]) -> tf.data.Dataset:
    """One example per entry of `lengths`: source and target of that many tokens, specials
    included, with token ids that number the examples (so rows are distinct)."""

    def generate():
        for index, length in enumerate(lengths):
            body = [100 + index] * (length - 1)
            yield {"encoder_inputs": body + [EOS], "decoder_inputs": [BOS, *body]}, body + [EOS]

    ids = tf.TensorSpec([None], tf.int32)
    signature = ({"encoder_inputs": ids, "decoder_inputs": ids}, ids)
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def real_rows(targets) -> int:
    """Rows of a targets batch that hold a real pair (padding rows have PAD targets only)."""
    return int(tf.math.count_nonzero(tf.reduce_any(targets != PAD, axis=1)))


def per_replica_shapes(strategy, batches) -> list[list[tuple[int, ...]]]:
    """For each step of a distributed dataset, each replica's shapes of encoder_inputs,
    decoder_inputs and targets (when equal: else the test fails), and its real rows."""
    steps = []
    for features, targets in batches:
        replicas = []
        for encoder, decoder, target in zip(
            *(
                strategy.experimental_local_results(tensor)
                for tensor in (features["encoder_inputs"], features["decoder_inputs"], targets)
            ),
            strict=True,
        ):
            assert encoder.shape == decoder.shape == target.shape
            replicas.append((*target.shape, real_rows(target)))
        steps.append(replicas)
    return steps


def test_replicas_of_a_step_get_the_same_declared_shape(synthetic_examples, two_cpu_strategy):
    declared = set(pipeline.static_batch_shapes(STATIC, TWO_REPLICAS))
    assert declared == {(32, 8), (21, 12), (14, 18), (9, 27), (6, 40), (4, 60), (4, 64)}
    for training in (True, False):
        steps = per_replica_shapes(
            two_cpu_strategy,
            two_cpu_strategy.distribute_datasets_from_function(
                functools.partial(
                    pipeline.make_dataset, synthetic_examples.dataset, STATIC, training=training
                )
            ),
        )
        assert len(steps) >= 5
        for replicas in steps:
            assert len(replicas) == 2
            assert replicas[0][:2] == replicas[1][:2]
            assert replicas[0][:2] in declared
        if not training:  # every validation pair once, in batches padded to full size
            assert sum(rows for replicas in steps for _, _, rows in replicas) == 600


@pytest.mark.parametrize("static_shapes", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_a_pipeline_feeding_several_replicas_splits_one_bucketed_batch(
    synthetic_examples, static_shapes, training
):
    """Consecutive elements go to consecutive replicas: each group of two holds one
    bucket, both halves of the same shape, and no pair twice; evaluation keeps every
    pair (a partial batch gets padding rows, as many for each replica)."""
    config = dataclasses.replace(SMALL, static_shapes=static_shapes)
    batches = list(
        pipeline.make_dataset(
            synthetic_examples.dataset, config, TWO_REPLICAS, training=training
        ).as_numpy_iterator()
    )
    assert len(batches) % 2 == 0
    for first, second in zip(batches[::2], batches[1::2], strict=True):
        assert first[1].shape == second[1].shape
        assert first[0]["encoder_inputs"].shape == second[0]["encoder_inputs"].shape
        assert first[1].shape[0] * first[1].shape[1] <= SMALL.batch_tokens // 2
    rows = [tuple(row) for _, targets in batches for row in targets if (row != PAD).any()]
    assert len(set(rows)) == len(rows)
    if not training:
        assert len(rows) == 600


def test_static_evaluation_batches_are_padded_with_rows_that_count_zero(synthetic_examples):
    declared = set(pipeline.static_batch_shapes(STATIC))
    rows = []
    for features, targets in pipeline.make_dataset(
        synthetic_examples.dataset, STATIC, training=False
    ).as_numpy_iterator():
        assert targets.shape in declared
        assert features["encoder_inputs"].shape == features["decoder_inputs"].shape
        real = (targets != PAD).any(axis=1)
        # A padding row: PAD targets (no loss, no metric), one EOS / BOS so that no
        # attention row is fully masked (NaN in float16 even where the loss is zero).
        for encoder, decoder in zip(
            features["encoder_inputs"][~real], features["decoder_inputs"][~real], strict=True
        ):
            assert encoder.tolist() == [EOS] + [PAD] * (len(encoder) - 1)
            assert decoder.tolist() == [BOS] + [PAD] * (len(decoder) - 1)
        rows += [tuple(int(i) for i in row if i != PAD) for row in features["encoder_inputs"][real]]
    assert len(rows) == 600
    assert sorted(rows) == encoder_rows(synthetic_examples.dataset.padded_batch(100))


def test_buckets_too_small_for_a_static_batch_are_counted():
    # Static batch sizes of SMALL: 64 pairs of length 8, 42 of 12, ..., 12 of 40, 8 of 64.
    lengths = [8] * 70 + [12] * 41 + [40] * 12 + [64] * 5
    examples = examples_of_lengths(lengths)
    length_counts = [lengths.count(length) for length in range(STATIC.max_length + 1)]
    report = pipeline.bucket_report(length_counts, STATIC)
    assert report == pipeline.BucketReport(
        lengths=[8, 12, 18, 27, 40, 60, 64],
        batch_sizes=[64, 42, 28, 18, 12, 8, 8],
        pairs=[70, 41, 0, 0, 12, 0, 5],
        unbatched=46,
    )
    yielded = set()
    for _ in range(3):
        for _, targets in pipeline.make_dataset(examples, STATIC).as_numpy_iterator():
            yielded |= {targets.shape}
    assert yielded == {(64, 8), (12, 40)}
    # Two replicas fed by one pipeline: one batch of a bucket is twice the replica's batch.
    two = pipeline.bucket_report(length_counts, STATIC, TWO_REPLICAS)
    assert (two.batch_sizes, two.unbatched) == ([64, 42, 28, 18, 12, 8, 8], 46)
    # Batches padded per batch, or evaluation batches, take every pair.
    assert pipeline.bucket_report(length_counts, SMALL).unbatched == 0
    assert pipeline.bucket_report(length_counts, STATIC, training=False).unbatched == 0
    with pytest.raises(ValueError) as error:
        pipeline.bucket_report([*length_counts, 3], STATIC)
    assert str(error.value) == (
        "train: 3 pairs have 65 tokens, more than max_length=64: tokenize them with max_length=64"
    )


def test_tokenize_pairs_counts_lengths_and_unbatched_pairs_are_logged(synthetic_examples, caplog):
    lengths = [
        max(len(features["encoder_inputs"]), len(targets))
        for features, targets in synthetic_examples.dataset.as_numpy_iterator()
    ]
    assert synthetic_examples.length_counts == tuple(lengths.count(length) for length in range(65))
    with caplog.at_level(logging.WARNING, logger="tf_transformer.data.pipeline"):
        report = pipeline.bucket_report(synthetic_examples.length_counts, STATIC)
    assert (report.pairs, report.unbatched) == ([0, 13, 103, 193, 197, 93, 1], 14)
    assert caplog.messages == [
        "train: 14 pairs are in length buckets (12, 64) with fewer pairs than one static "
        "batch: training never sees them (lower batch_tokens, or raise bucket_growth for "
        "fewer, fuller buckets)"
    ]
    batches = pipeline.make_dataset(synthetic_examples.dataset, STATIC)
    seen_lengths = {targets.shape[1] for _ in range(3) for _, targets in batches}
    assert seen_lengths == {18, 27, 40, 60}


def training_rows(batches: tf.data.Dataset, epochs: int = 2) -> list[list[list[int]]]:
    """Each batch's encoder rows over `epochs` epochs."""
    return [
        features["encoder_inputs"].tolist()
        for _ in range(epochs)
        for features, _ in batches.as_numpy_iterator()
    ]


def test_cache_modes_give_the_same_batches(synthetic_examples, tmp_path):
    prefix = str(tmp_path / "cache" / "synthetic")
    batches = {
        cache: training_rows(
            pipeline.make_dataset(
                synthetic_examples.dataset, dataclasses.replace(STATIC, cache=cache), name="train"
            )
        )
        for cache in ("memory", "none", prefix)
    }
    assert batches["memory"] == batches["none"] == batches[prefix]
    written = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert "synthetic.train.shard-0-of-1.index" in written


def count(dataset: tf.data.Dataset) -> int:
    return int(dataset.reduce(0, lambda total, _: total + 1))


def test_a_file_cache_holds_only_its_pipeline_shard(synthetic_examples, tmp_path):
    config = dataclasses.replace(STATIC, cache=str(tmp_path / "shards"))
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, 4)
        for _ in pipeline.make_dataset(synthetic_examples.dataset, config, context, name="train"):
            pass
        # A complete cache file is read instead of the dataset it caches.
        cached = synthetic_examples.dataset.take(0).cache(
            pipeline.cache_filename(config, "train", context)
        )
        assert count(cached) == 300


def test_a_file_cache_at_a_url(synthetic_examples, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(STATIC, cache="ram://pipeline_test/cache/synthetic")
    first = training_rows(
        pipeline.make_dataset(synthetic_examples.dataset, config, name="train"), 1
    )
    assert tf.io.gfile.exists("ram://pipeline_test/cache/synthetic.train.shard-0-of-1.index")
    # The complete cache now serves the batches without the examples.
    cached = pipeline.make_dataset(synthetic_examples.dataset.take(0), config, name="train")
    assert training_rows(cached, 1) == first
    assert list(tmp_path.iterdir()) == []


def test_a_file_cache_per_dataset_name(synthetic_examples, tmp_path):
    config = dataclasses.replace(STATIC, cache=str(tmp_path / "named"))
    for name, pairs in (("validation", 600), ("test", 10)):
        examples = synthetic_examples.dataset.take(pairs)
        for _ in pipeline.make_dataset(examples, config, training=False, name=name):
            pass
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix == ".index") == [
        "named.test.shard-0-of-1.index",
        "named.validation.shard-0-of-1.index",
    ]
    validation = pipeline.make_dataset(
        synthetic_examples.dataset.take(0), config, training=False, name="validation"
    )
    assert sum(real_rows(targets) for _, targets in validation) == 600
    with pytest.raises(ValueError) as error:
        pipeline.make_dataset(synthetic_examples.dataset, config)
    assert str(error.value) == (
        f"cache={config.cache!r} is a file cache: make_dataset needs the dataset's name "
        '(e.g. name="train") to name its files'
    )


def test_a_resumed_run_reshuffles_from_its_initial_step(synthetic_examples):
    def first_batch(initial_step: int) -> list[list[int]]:
        batches = pipeline.make_dataset(
            synthetic_examples.dataset, STATIC, initial_step=initial_step
        )
        return training_rows(batches.take(1), 1)[0]

    assert first_batch(0) == first_batch(0)
    assert first_batch(300) == first_batch(300)
    assert first_batch(300) != first_batch(0)
    assert first_batch(301) != first_batch(300)
