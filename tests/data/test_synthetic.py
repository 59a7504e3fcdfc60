from __future__ import annotations

import random

import pytest

from tf_transformer.data import synthetic
from tf_transformer.data.synthetic import (
    ACCUSATIVE,
    DATIVE,
    NOMINATIVE,
    Clause,
    NounPhrase,
    Subject,
)


def noun(english: str) -> synthetic.Noun:
    return next(noun for noun in synthetic.NOUNS if noun.english == english)


def verb(english: str) -> synthetic.Verb:
    verbs = synthetic.TRANSITIVE_VERBS + synthetic.INTRANSITIVE_VERBS
    return next(verb for verb in verbs if verb.english_form(0) == english)


@pytest.mark.parametrize(
    ("phrase", "english", "german_by_case"),
    [
        (
            NounPhrase("the", ("big",), noun("dog")),
            "the big dog",
            ("der große Hund", "den großen Hund", "dem großen Hund"),
        ),
        (
            NounPhrase("a", ("old",), noun("house")),
            "an old house",
            ("ein altes Haus", "ein altes Haus", "einem alten Haus"),
        ),
        (
            NounPhrase("a", ("red",), noun("dog")),
            "a red dog",
            ("ein roter Hund", "einen roten Hund", "einem roten Hund"),
        ),
        (
            NounPhrase("my", ("small", "green"), noun("cat")),
            "my small green cat",
            ("meine kleine grüne Katze", "meine kleine grüne Katze", "meiner kleinen grünen Katze"),
        ),
        (
            NounPhrase("the", (), noun("child"), plural=True),
            "the children",
            ("die Kinder", "die Kinder", "den Kindern"),
        ),
        (
            NounPhrase("my", ("new",), noun("car"), plural=True),
            "my new cars",
            ("meine neuen Autos", "meine neuen Autos", "meinen neuen Autos"),
        ),
    ],
)
def test_noun_phrases_agree_in_gender_number_and_case(phrase, english, german_by_case):
    assert phrase.english() == english
    assert tuple(phrase.german(case) for case in (NOMINATIVE, ACCUSATIVE, DATIVE)) == german_by_case


@pytest.mark.parametrize(
    ("clause", "english", "german_main", "german_subordinate"),
    [
        (
            Clause(
                Subject(pronoun="he"), verb("see"), "present", NounPhrase("the", (), noun("ball"))
            ),
            "he sees the ball",
            "er sieht den Ball",
            "er den Ball sieht",
        ),
        (
            Clause(
                Subject(pronoun="I"),
                verb("see"),
                "perfect",
                NounPhrase("the", (), noun("ball")),
                adverb="today",
            ),
            "today I have seen the ball",
            "heute habe ich den Ball gesehen",
            "ich heute den Ball gesehen habe",
        ),
        (
            Clause(
                Subject(noun_phrase=NounPhrase("the", (), noun("dog"), plural=True)),
                verb("run"),
                "perfect",
                preposition="with",
                prepositional_object=NounPhrase("a", (), noun("cat")),
            ),
            "the dogs have run with a cat",
            "die Hunde sind mit einer Katze gelaufen",
            "die Hunde mit einer Katze gelaufen sind",
        ),
        (
            Clause(
                Subject(pronoun="you"),
                verb("read"),
                "want",
                NounPhrase("my", (), noun("book")),
                adverb="now",
            ),
            "now you want to read my book",
            "jetzt willst du mein Buch lesen",
            "du jetzt mein Buch lesen willst",
        ),
        (
            Clause(
                Subject(pronoun="we"),
                verb("sleep"),
                "can",
                preposition="without",
                prepositional_object=NounPhrase("the", ("small",), noun("hat")),
            ),
            "we can sleep without the small hat",
            "wir können ohne den kleinen Hut schlafen",
            "wir ohne den kleinen Hut schlafen können",
        ),
    ],
)
def test_clauses_conjugate_and_reorder(clause, english, german_main, german_subordinate):
    assert clause.english() == english
    assert clause.german_main() == german_main
    assert clause.german_subordinate() == german_subordinate


def test_every_english_sentence_has_exactly_one_translation():
    rng = random.Random(7)
    translations: dict[str, set[str]] = {}
    for _ in range(20_000):
        english, german = synthetic.random_pair(rng)
        translations.setdefault(english, set()).add(german)
    ambiguous = {english: germans for english, germans in translations.items() if len(germans) > 1}
    assert ambiguous == {}
    # Repeats happen, so the check above compared real alternatives.
    assert len(translations) < 20_000


def test_generate_pairs_is_deterministic_distinct_and_within_length():
    pairs = synthetic.generate_pairs(2000, seed=3)
    assert pairs == synthetic.generate_pairs(2000, seed=3)
    assert pairs != synthetic.generate_pairs(2000, seed=4)
    assert len({english for english, _ in pairs}) == 2000
    word_counts = [len(text.split()) for pair in pairs for text in pair]
    assert min(word_counts) >= synthetic.MIN_WORDS
    assert max(word_counts) <= synthetic.MAX_WORDS
    # The length range is used, not just allowed.
    assert min(word_counts) <= 5 and max(word_counts) >= 18


def test_splits_have_requested_sizes_and_do_not_overlap():
    splits = synthetic.synthetic_splits(seed=1, train_size=1000, validation_size=50, test_size=60)
    assert {name: len(pairs) for name, pairs in splits.items()} == {
        "train": 1000,
        "validation": 50,
        "test": 60,
    }
    sources = [{english for english, _ in pairs} for pairs in splits.values()]
    assert sum(len(split) for split in sources) == len(set().union(*sources)) == 1110
