"""Text sources. Parallel ones return a `tf.data.Dataset` of (source, target) pairs of
scalar tf.string sentences, in corpus order; `load_lines` returns one language's lines
(monolingual text for language models).

Files are read through tf.io.gfile, so a path may be local or a URL (gs://, ram://).
They are checked before a dataset is built: a missing file, parallel files with
different line counts, a line that is not UTF-8 or a TSV line without exactly one tab
raises an error naming the file (and line). Empty lines pass through: the pipeline drops
and counts pairs with an empty side (see pipeline.tokenize_pairs). A TSV's first line is
skipped when it is a header (`is_header`), as in labelled text (`sentence<TAB>label`).
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from tf_transformer.config import DataConfig, join_path
from tf_transformer.data import synthetic

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# File stems of the Multi30k task-1 raw files, by split.
MULTI30K_FILE_STEMS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
SYNTHETIC_LANGUAGES = ("en", "de")
# The last field of a TSV header line (GLUE's "sentence<TAB>label").
HEADER_LABEL = "label"
# Lines split per vectorized tf.strings.split call when reading TSV files.
_TSV_BATCH_SIZE = 4096
# Bytes per read when checking a file's lines.
_READ_CHUNK_BYTES = 1 << 20


def tfds_pairs(
    name: str,
    split: str,
    source_language: str,
    target_language: str,
    data_dir: str | None = None,
) -> tf.data.Dataset:
    """A TFDS translation dataset, e.g. `tfds_pairs("wmt14_translate/de-en", "train", "en",
    "de")`. The languages are the dataset's feature keys, in the direction you choose."""
    builder = tfds.builder(name, data_dir=data_dir)
    languages = sorted(builder.info.features.keys())
    for language in (source_language, target_language):
        if language not in languages:
            raise ValueError(
                f"TFDS dataset {name} has no language {language!r}; it has {', '.join(languages)}"
            )
    builder.download_and_prepare()
    return builder.as_dataset(split=split).map(
        lambda example: (example[source_language], example[target_language]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def parallel_file_pairs(
    source_path: str | os.PathLike, target_path: str | os.PathLike
) -> tf.data.Dataset:
    """Two line-aligned files, plain or gzip-compressed (`.gz`): line i of one translates
    line i of the other."""
    source_path, target_path = os.fspath(source_path), os.fspath(target_path)
    source_lines, target_lines = _count_lines(source_path), _count_lines(target_path)
    if source_lines != target_lines:
        raise ValueError(
            f"Parallel files differ in length: {source_path} has {source_lines} lines, "
            f"{target_path} has {target_lines}"
        )
    return tf.data.Dataset.zip(_text_lines(source_path), _text_lines(target_path))


def is_header(line_number: int, line: str) -> bool:
    """Whether a TSV line names the columns: the first line, its last field "label"."""
    return line_number == 1 and line.rpartition("\t")[2].strip().lower() == HEADER_LABEL


def tsv_pairs(path: str | os.PathLike) -> tf.data.Dataset:
    """A tab-separated file, plain or `.gz`: one "source<TAB>target" pair per line, after
    a header line if there is one (`is_header`). An empty line is an empty pair."""
    path = os.fspath(path)
    header_lines = 0
    for line_number, line in checked_lines(path):
        fields = line.count("\t") + 1
        if line.strip() and fields != 2:
            raise ValueError(
                f"{path}: line {line_number} has {fields} tab-separated fields, expected 2 "
                "(source<TAB>target)"
            )
        header_lines += is_header(line_number, line)
    if header_lines:
        logger.info("%s: line 1 is a header (its last field is %r), skipped", path, HEADER_LABEL)

    def split_fields(lines: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Empty lines have one field: to_tensor pads them to an empty pair.
        fields = tf.strings.split(lines, "\t").to_tensor(default_value="", shape=[None, 2])
        return fields[:, 0], fields[:, 1]

    lines = _text_lines(path).skip(header_lines)
    return lines.batch(_TSV_BATCH_SIZE).map(split_fields).unbatch()


def directory_pairs(
    directory: str | os.PathLike, stem: str, source_language: str, target_language: str
) -> tf.data.Dataset:
    """STEM.SOURCE and STEM.TARGET (each plain or `.gz`) from `directory`, or else one
    STEM.tsv / STEM.tsv.gz."""
    directory = os.fspath(directory)
    source_path = _existing(directory, f"{stem}.{source_language}")
    target_path = _existing(directory, f"{stem}.{target_language}")
    if source_path and target_path:
        return parallel_file_pairs(source_path, target_path)
    tsv_path = _existing(directory, f"{stem}.tsv")
    if tsv_path:
        return tsv_pairs(tsv_path)
    raise FileNotFoundError(
        f"No {stem} split in {directory}: expected {stem}.{source_language} and "
        f"{stem}.{target_language} (or .gz), or {stem}.tsv (or .gz)"
    )


def multi30k_pairs(
    directory: str | os.PathLike,
    split: str,
    source_language: str = "en",
    target_language: str = "de",
) -> tf.data.Dataset:
    """Multi30k task 1 from a directory of its raw files (train.en.gz, val.de.gz,
    test_2016_flickr.en.gz, ...)."""
    _check_split(split)
    return directory_pairs(directory, MULTI30K_FILE_STEMS[split], source_language, target_language)


def synthetic_pairs(
    split: str,
    seed: int = 0,
    train_size: int = 20_000,
    eval_size: int = 500,
    source_language: str = "en",
    target_language: str = "de",
) -> tf.data.Dataset:
    """The built-in English -> German-style corpus (see synthetic.py), either direction.
    Validation and test have `eval_size` pairs each."""
    _check_split(split)
    languages = (source_language, target_language)
    if sorted(languages) != sorted(SYNTHETIC_LANGUAGES):
        raise ValueError(f"The synthetic corpus translates between en and de, not {languages}")
    pairs = synthetic.synthetic_splits(seed, train_size, eval_size, eval_size)[split]
    english, german = zip(*pairs, strict=True)
    if source_language == "en":
        return tf.data.Dataset.from_tensor_slices((list(english), list(german)))
    return tf.data.Dataset.from_tensor_slices((list(german), list(english)))


def load_pairs(config: DataConfig, split: str) -> tf.data.Dataset:
    """The `split` ("train", "validation" or "test") of the corpus `config` names (its
    first config.train_examples pairs for "train", when set)."""
    pairs = _corpus_pairs(config, split)
    if split == "train" and config.train_examples:
        return pairs.take(config.train_examples)
    return pairs


def _corpus_pairs(config: DataConfig, split: str) -> tf.data.Dataset:
    _check_split(split)
    languages = (config.source_language, config.target_language)
    if config.source == "tfds":
        return tfds_pairs(config.tfds_name, split, *languages, config.tfds_data_dir or None)
    if config.source == "files":
        return directory_pairs(config.data_dir, split, *languages)
    if config.source == "multi30k":
        return multi30k_pairs(config.data_dir, split, *languages)
    return synthetic_pairs(
        split,
        config.synthetic_seed,
        config.synthetic_train_size,
        config.synthetic_eval_size,
        *languages,
    )


def load_lines(config: DataConfig, split: str, language: str | None = None) -> tf.data.Dataset:
    """The `split` of the corpus `config` names as scalar tf.string lines in `language`
    (default `config.source_language`) only: SPLIT.LANG[.gz] of a `files` directory (or
    a column of SPLIT.tsv), one side of Multi30k, TFDS or the synthetic corpus."""
    _check_split(split)
    language = language or config.source_language
    if language not in (config.source_language, config.target_language):
        raise ValueError(
            f"language {language!r} is neither data.source_language "
            f"({config.source_language!r}) nor data.target_language ({config.target_language!r})"
        )
    side = 0 if language == config.source_language else 1
    directory_stem = {"files": split, "multi30k": MULTI30K_FILE_STEMS[split]}.get(config.source)
    if directory_stem is not None:
        path = _existing(config.data_dir, f"{directory_stem}.{language}")
        if path is not None:
            lines = text_file_lines(path)
            if split == "train" and config.train_examples:
                return lines.take(config.train_examples)
            return lines
        if config.source == "multi30k":
            raise FileNotFoundError(f"No {directory_stem}.{language} (or .gz) in {config.data_dir}")
    return load_pairs(config, split).map(lambda *pair: pair[side])


def text_file_lines(path: str) -> tf.data.Dataset:
    """The lines of one plain or `.gz` UTF-8 file (checked first, naming a bad line)."""
    path = os.fspath(path)
    _count_lines(path)
    return _text_lines(path)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _existing(directory: str, name: str) -> str | None:
    """`directory/name`, or else `directory/name.gz`, if either is a file."""
    path = join_path(directory, name)
    for candidate in (path, f"{path}.gz"):
        if tf.io.gfile.exists(candidate) and not tf.io.gfile.isdir(candidate):
            return candidate
    return None


def checked_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a plain or gzipped UTF-8 file."""
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"Text file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as file:
        data = gzip.GzipFile(fileobj=file) if path.endswith(".gz") else file
        for line_number, line in enumerate(binary_lines(data), start=1):
            try:
                yield line_number, line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}: line {line_number} is not valid UTF-8 "
                    f"({error.reason} at byte {error.start})"
                ) from None


def binary_lines(data) -> Iterator[bytes]:
    """The lines of a binary file object, each with its "\n" (the last may lack it),
    split at "\n" only and read in large chunks. Not a GFile's own line iterator: it
    makes one call per line (far slower on a local file) and drops every "\r" byte,
    inside lines too."""
    pending = b""
    while chunk := data.read(_READ_CHUNK_BYTES):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from (line + b"\n" for line in lines)
    if pending:
        yield pending


def _count_lines(path: str) -> int:
    """Lines in `path`, after checking each is valid UTF-8."""
    return sum(1 for _ in checked_lines(path))


def _text_lines(path: str) -> tf.data.Dataset:
    compression = "GZIP" if path.endswith(".gz") else ""
    return tf.data.TextLineDataset(path, compression_type=compression)
