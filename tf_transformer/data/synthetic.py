"""A built-in English -> German-style parallel corpus, generated from a seed.

It serves the offline default training run and fast tests. The grammar is small (a few
dozen nouns, verbs and adjectives) but translating it takes more than a word-for-word
lookup, so a model must really attend:

- agreement: articles and adjective endings follow gender, number and case
  ("the big dog" -> "der große Hund" / "den großen Hund" / "dem großen Hund"), verbs
  follow person and number ("I see" -> "ich sehe", "he sees" -> "er sieht");
- word order: the finite verb comes second after a fronted adverb ("Today the dog sees
  ..." -> "Heute sieht der Hund ..."), participles and infinitives move to the end of the
  clause ("has seen the ball" -> "hat den Ball gesehen"), and subordinate clauses put the
  finite verb last ("because the dog has seen the ball" -> "weil der Hund den Ball gesehen
  hat").

Every English sentence has exactly one German translation. Sentences have 4 to 20 words.
"""

from __future__ import annotations

import dataclasses
import random

MIN_WORDS = 4
MAX_WORDS = 20

# Cases the grammar uses: nominative (subject), accusative (object; "without", "for"),
# dative ("with", "next to", "behind").
NOMINATIVE, ACCUSATIVE, DATIVE = "nominative", "accusative", "dative"


@dataclasses.dataclass(frozen=True)
class Noun:
    english: str
    english_plural: str
    german: str
    german_plural: str
    # "m", "f" or "n"; plurals decline alike whatever the gender.
    gender: str

    @property
    def german_dative_plural(self) -> str:
        # German dative plurals add -n unless the plural already ends in -n or -s.
        return self.german_plural + ("" if self.german_plural.endswith(("n", "s")) else "n")


@dataclasses.dataclass(frozen=True)
class Verb:
    # Base form, third person singular, past participle: "see sees seen".
    english: str
    # Present tense for ich, du, er/sie and wir/sie (the last is also the infinitive),
    # then the past participle: "sehe siehst sieht sehen gesehen".
    german: str
    # Auxiliary of the perfect tense: "haben" or "sein".
    auxiliary: str = "haben"

    def english_form(self, index: int) -> str:
        return self.english.split()[index]

    def german_form(self, index: int) -> str:
        return self.german.split()[index]


def _nouns(gender: str, *entries: str) -> tuple[Noun, ...]:
    """Nouns from "dog dogs Hund Hunde" entries."""
    return tuple(Noun(*entry.split(), gender=gender) for entry in entries)


NOUNS = (
    *_nouns(
        "m",
        "dog dogs Hund Hunde",
        "man men Mann Männer",
        "ball balls Ball Bälle",
        "bird birds Vogel Vögel",
        "apple apples Apfel Äpfel",
        "teacher teachers Lehrer Lehrer",
        "table tables Tisch Tische",
        "chair chairs Stuhl Stühle",
        "letter letters Brief Briefe",
        "brother brothers Bruder Brüder",
        "cook cooks Koch Köche",
        "hat hats Hut Hüte",
    ),
    *_nouns(
        "f",
        "cat cats Katze Katzen",
        "woman women Frau Frauen",
        "flower flowers Blume Blumen",
        "door doors Tür Türen",
        "lamp lamps Lampe Lampen",
        "sister sisters Schwester Schwestern",
        "bag bags Tasche Taschen",
        "mouse mice Maus Mäuse",
        "clock clocks Uhr Uhren",
        "bottle bottles Flasche Flaschen",
    ),
    *_nouns(
        "n",
        "child children Kind Kinder",
        "house houses Haus Häuser",
        "book books Buch Bücher",
        "car cars Auto Autos",
        "horse horses Pferd Pferde",
        "picture pictures Bild Bilder",
        "window windows Fenster Fenster",
        "girl girls Mädchen Mädchen",
        "boat boats Boot Boote",
        "egg eggs Ei Eier",
    ),
)

# English adjective -> German stem; no stem ends in -e, so endings attach unchanged.
ADJECTIVES = {
    "big": "groß",
    "small": "klein",
    "red": "rot",
    "old": "alt",
    "young": "jung",
    "new": "neu",
    "green": "grün",
    "blue": "blau",
    "beautiful": "schön",
    "fast": "schnell",
    "white": "weiß",
    "black": "schwarz",
    "funny": "lustig",
    "clever": "klug",
    "loud": "laut",
    "brave": "mutig",
    "happy": "fröhlich",
    "hungry": "hungrig",
}

TRANSITIVE_VERBS = (
    Verb("see sees seen", "sehe siehst sieht sehen gesehen"),
    Verb("find finds found", "finde findest findet finden gefunden"),
    Verb("buy buys bought", "kaufe kaufst kauft kaufen gekauft"),
    Verb("carry carries carried", "trage trägst trägt tragen getragen"),
    Verb("hold holds held", "halte hältst hält halten gehalten"),
    Verb("like likes liked", "mag magst mag mögen gemocht"),
    Verb("visit visits visited", "besuche besuchst besucht besuchen besucht"),
    Verb("paint paints painted", "male malst malt malen gemalt"),
    Verb("read reads read", "lese liest liest lesen gelesen"),
    Verb("wash washes washed", "wasche wäschst wäscht waschen gewaschen"),
    Verb("need needs needed", "brauche brauchst braucht brauchen gebraucht"),
    Verb("open opens opened", "öffne öffnest öffnet öffnen geöffnet"),
    Verb("catch catches caught", "fange fängst fängt fangen gefangen"),
)

INTRANSITIVE_VERBS = (
    Verb("sleep sleeps slept", "schlafe schläfst schläft schlafen geschlafen"),
    Verb("run runs run", "laufe läufst läuft laufen gelaufen", auxiliary="sein"),
    Verb("sing sings sung", "singe singst singt singen gesungen"),
    Verb("wait waits waited", "warte wartest wartet warten gewartet"),
    Verb("laugh laughs laughed", "lache lachst lacht lachen gelacht"),
    Verb("swim swims swum", "schwimme schwimmst schwimmt schwimmen geschwommen", auxiliary="sein"),
    Verb("come comes come", "komme kommst kommt kommen gekommen", auxiliary="sein"),
    Verb("dance dances danced", "tanze tanzt tanzt tanzen getanzt"),
    Verb("play plays played", "spiele spielst spielt spielen gespielt"),
    Verb("work works worked", "arbeite arbeitest arbeitet arbeiten gearbeitet"),
)

# Verbs that introduce a "that" clause: "The man says that ..." -> "Der Mann sagt, dass ...".
REPORTING_VERBS = (
    Verb("say says said", "sage sagst sagt sagen gesagt"),
    Verb("know knows known", "weiß weißt weiß wissen gewusst"),
    Verb("think thinks thought", "denke denkst denkt denken gedacht"),
)

# Finite verbs of the compound tenses: English forms (I/you/we/they, he/she) and German
# forms (ich, du, er/sie, wir/sie).
AUXILIARIES = {
    "haben": (("have", "has"), ("habe", "hast", "hat", "haben")),
    "sein": (("have", "has"), ("bin", "bist", "ist", "sind")),
}
MODALS = {
    "want": (("want to", "wants to"), ("will", "willst", "will", "wollen")),
    "can": (("can", "can"), ("kann", "kannst", "kann", "können")),
}
TENSES = ("present", "perfect", *MODALS)

# English pronoun -> (German pronoun, index of the German verb form, English 3rd singular?).
PRONOUNS = {
    "I": ("ich", 0, False),
    "you": ("du", 1, False),
    "he": ("er", 2, True),
    "she": ("sie", 2, True),
    "we": ("wir", 3, False),
    "they": ("sie", 3, False),
}

PREPOSITIONS = {
    "with": ("mit", DATIVE),
    "without": ("ohne", ACCUSATIVE),
    "for": ("für", ACCUSATIVE),
    "next to": ("neben", DATIVE),
    "behind": ("hinter", DATIVE),
}
ADVERBS = {"today": "heute", "now": "jetzt", "often": "oft", "sometimes": "manchmal"}
CONJUNCTIONS = {"because": "weil", "although": "obwohl", "if": "wenn"}

# Article by determiner, case and gender ("pl" for plural); "a" has no plural.
ARTICLES = {
    "the": {
        NOMINATIVE: {"m": "der", "f": "die", "n": "das", "pl": "die"},
        ACCUSATIVE: {"m": "den", "f": "die", "n": "das", "pl": "die"},
        DATIVE: {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
    },
    "a": {
        NOMINATIVE: {"m": "ein", "f": "eine", "n": "ein"},
        ACCUSATIVE: {"m": "einen", "f": "eine", "n": "ein"},
        DATIVE: {"m": "einem", "f": "einer", "n": "einem"},
    },
    "my": {
        NOMINATIVE: {"m": "mein", "f": "meine", "n": "mein", "pl": "meine"},
        ACCUSATIVE: {"m": "meinen", "f": "meine", "n": "mein", "pl": "meine"},
        DATIVE: {"m": "meinem", "f": "meiner", "n": "meinem", "pl": "meinen"},
    },
}
# Adjective endings after "der" (weak declension) and after "ein"/"mein" (mixed).
WEAK_ENDINGS = {
    NOMINATIVE: {"m": "e", "f": "e", "n": "e", "pl": "en"},
    ACCUSATIVE: {"m": "en", "f": "e", "n": "e", "pl": "en"},
    DATIVE: {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
MIXED_ENDINGS = {
    NOMINATIVE: {"m": "er", "f": "e", "n": "es", "pl": "en"},
    ACCUSATIVE: {"m": "en", "f": "e", "n": "es", "pl": "en"},
    DATIVE: {"m": "en", "f": "en", "n": "en", "pl": "en"},
}


@dataclasses.dataclass(frozen=True)
class NounPhrase:
    determiner: str  # "the", "a" or "my"
    adjectives: tuple[str, ...]  # English adjectives, in order
    noun: Noun
    plural: bool = False

    def english(self) -> str:
        words = [*self.adjectives, self.noun.english_plural if self.plural else self.noun.english]
        determiner = self.determiner
        if determiner == "a" and words[0][0] in "aeiou":
            determiner = "an"
        return " ".join([determiner, *words])

    def german(self, case: str) -> str:
        key = "pl" if self.plural else self.noun.gender
        endings = WEAK_ENDINGS if self.determiner == "the" else MIXED_ENDINGS
        adjectives = [ADJECTIVES[adjective] + endings[case][key] for adjective in self.adjectives]
        if not self.plural:
            noun = self.noun.german
        elif case == DATIVE:
            noun = self.noun.german_dative_plural
        else:
            noun = self.noun.german_plural
        return " ".join([ARTICLES[self.determiner][case][key], *adjectives, noun])


@dataclasses.dataclass(frozen=True)
class Subject:
    """A pronoun (a key of PRONOUNS) or a noun phrase."""

    pronoun: str | None = None
    noun_phrase: NounPhrase | None = None

    def english(self) -> str:
        return self.pronoun or self.noun_phrase.english()

    def german(self) -> str:
        if self.pronoun:
            return PRONOUNS[self.pronoun][0]
        return self.noun_phrase.german(NOMINATIVE)

    @property
    def german_person(self) -> int:
        """Index of the German present-tense form: ich, du, er/sie, wir/sie."""
        if self.pronoun:
            return PRONOUNS[self.pronoun][1]
        return 3 if self.noun_phrase.plural else 2

    @property
    def english_third_singular(self) -> bool:
        if self.pronoun:
            return PRONOUNS[self.pronoun][2]
        return not self.noun_phrase.plural


@dataclasses.dataclass(frozen=True)
class Clause:
    subject: Subject
    verb: Verb
    tense: str  # one of TENSES
    object: NounPhrase | None = None  # accusative object of a transitive verb
    preposition: str | None = None  # a key of PREPOSITIONS
    prepositional_object: NounPhrase | None = None
    adverb: str | None = None  # a key of ADVERBS

    def english(self) -> str:
        third_singular = self.subject.english_third_singular
        if self.tense == "present":
            verbs = [self.verb.english_form(1 if third_singular else 0)]
        else:
            english_finite, _ = (
                AUXILIARIES["haben"] if self.tense == "perfect" else MODALS[self.tense]
            )
            finite = english_finite[1 if third_singular else 0]
            verbs = [finite, self.verb.english_form(2 if self.tense == "perfect" else 0)]
        words = [self.adverb, self.subject.english(), *verbs, *self._english_complements()]
        return " ".join(word for word in words if word)

    def german_main(self) -> str:
        """Verb second: [adverb] finite-verb subject ... or subject finite-verb ...,
        with the participle or infinitive at the end."""
        finite, final = self._german_verbs()
        middle = [*self._german_complements(), final]
        if self.adverb:
            words = [ADVERBS[self.adverb], finite, self.subject.german(), *middle]
        else:
            words = [self.subject.german(), finite, *middle]
        return " ".join(word for word in words if word)

    def german_subordinate(self) -> str:
        """Verb last: subject [adverb] ... [participle or infinitive] finite-verb."""
        finite, final = self._german_verbs()
        adverb = ADVERBS[self.adverb] if self.adverb else None
        words = [self.subject.german(), adverb, *self._german_complements(), final, finite]
        return " ".join(word for word in words if word)

    def _english_complements(self) -> list[str]:
        words = [self.object.english()] if self.object else []
        if self.preposition:
            words += [self.preposition, self.prepositional_object.english()]
        return words

    def _german_complements(self) -> list[str]:
        words = [self.object.german(ACCUSATIVE)] if self.object else []
        if self.preposition:
            german_preposition, case = PREPOSITIONS[self.preposition]
            words += [german_preposition, self.prepositional_object.german(case)]
        return words

    def _german_verbs(self) -> tuple[str, str | None]:
        """The finite verb and the verb that goes to the end of the clause, if any."""
        person = self.subject.german_person
        if self.tense == "present":
            return self.verb.german_form(person), None
        if self.tense == "perfect":
            return AUXILIARIES[self.verb.auxiliary][1][person], self.verb.german_form(4)
        return MODALS[self.tense][1][person], self.verb.german_form(3)


def _sentence(words: str) -> str:
    return words[0].upper() + words[1:] + "."


def _random_noun_phrase(rng: random.Random) -> NounPhrase:
    determiner = rng.choice(("the", "the", "a", "my"))
    plural = determiner != "a" and rng.random() < 0.3
    adjective_count = rng.choices((0, 1, 2), weights=(6, 3, 1))[0]
    adjectives = tuple(rng.sample(sorted(ADJECTIVES), adjective_count))
    return NounPhrase(determiner, adjectives, rng.choice(NOUNS), plural)


def _random_subject(rng: random.Random) -> Subject:
    if rng.random() < 0.35:
        return Subject(pronoun=rng.choice(sorted(PRONOUNS)))
    return Subject(noun_phrase=_random_noun_phrase(rng))


def _random_clause(rng: random.Random) -> Clause:
    transitive = rng.random() < 0.6
    preposition = rng.choice(sorted(PREPOSITIONS)) if rng.random() < 0.3 else None
    return Clause(
        subject=_random_subject(rng),
        verb=rng.choice(TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS),
        tense=rng.choice(TENSES),
        object=_random_noun_phrase(rng) if transitive else None,
        preposition=preposition,
        prepositional_object=_random_noun_phrase(rng) if preposition else None,
        adverb=rng.choice(sorted(ADVERBS)) if rng.random() < 0.25 else None,
    )


def random_pair(rng: random.Random) -> tuple[str, str]:
    """One (English, German) sentence pair: a main clause, a main clause with an adverbial
    subordinate clause, or a reported "that" clause."""
    kind = rng.choices(("main", "conjunction", "that"), weights=(5, 3, 2))[0]
    clause = _random_clause(rng)
    if kind == "main":
        return _sentence(clause.english()), _sentence(clause.german_main())
    if kind == "conjunction":
        conjunction = rng.choice(sorted(CONJUNCTIONS))
        main = _random_clause(rng)
        return (
            _sentence(f"{main.english()} {conjunction} {clause.english()}"),
            _sentence(
                f"{main.german_main()}, {CONJUNCTIONS[conjunction]} {clause.german_subordinate()}"
            ),
        )
    speaker = Clause(_random_subject(rng), rng.choice(REPORTING_VERBS), "present")
    return (
        _sentence(f"{speaker.english()} that {clause.english()}"),
        _sentence(f"{speaker.german_main()}, dass {clause.german_subordinate()}"),
    )


def generate_pairs(num_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """`num_pairs` distinct (English, German) pairs of 4 to 20 words, the same for a seed."""
    rng = random.Random(seed)
    pairs: dict[str, str] = {}
    while len(pairs) < num_pairs:
        english, german = random_pair(rng)
        lengths = (len(english.split()), len(german.split()))
        if english not in pairs and all(MIN_WORDS <= n <= MAX_WORDS for n in lengths):
            pairs[english] = german
    return list(pairs.items())


def synthetic_splits(
    seed: int = 0, train_size: int = 20_000, validation_size: int = 500, test_size: int = 500
) -> dict[str, list[tuple[str, str]]]:
    """Disjoint train/validation/test splits: no English sentence is in two splits."""
    pairs = generate_pairs(train_size + validation_size + test_size, seed)
    return {
        "train": pairs[:train_size],
        "validation": pairs[train_size : train_size + validation_size],
        "test": pairs[train_size + validation_size :],
    }
