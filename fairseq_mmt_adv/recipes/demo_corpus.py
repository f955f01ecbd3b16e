"""A small, deterministic, visually grounded English->German corpus with image features.

Every sentence holds exactly one ambiguous English noun (``bank``, ``bat``, ``glasses`` ...) whose
German translation (and so the German article and adjective ending) depends on the scene of the
image: ``bank`` is ``ufer`` at a river and ``bank`` in a city street. The scene is visible only in
the sentence's feature vector, and each sense makes up half of the sentences, so a text-only model
gets about half of the ambiguous nouns right while a model that uses the image can get all of
them. Everything else in a sentence is predictable from its English side.

Usage: ``python -m fairseq_mmt_adv.recipes.demo_corpus OUT_DIR [--seed N] [--train N] [--valid N]
[--test N] [--feature-dim D] [--dtype float32|float16]``. This module uses only numpy and the
standard library.

Layout under ``OUT_DIR``: ``raw/{split}.en``, ``raw/{split}.de`` (lower-cased, tokenized, one
sentence a line), ``raw/{split}.ambig`` (``english_word<TAB>german_noun<TAB>scene`` a line),
``features/{split}.npy`` (shape ``(N, D)``, row ``i`` belongs to line ``i``), ``README.txt``, and
``commute/``: a contrastive set in CoMMuTE's layout (``src.en``, ``correct.de``, ``incorrect.de``,
and ``features.npy`` for its images), for ``fairseq-mmt-evaluate contrastive``.
"""

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")
DEFAULT_SIZES = {"train": 4000, "valid": 203, "test": 301}
DTYPES = ("float32", "float16")

SCENES = (
    "river",
    "city_street",
    "cave",
    "baseball_field",
    "kitchen",
    "optician",
    "tennis_club",
    "courtroom",
    "garden",
    "factory",
    "post_office",
    "classroom",
    "construction_site",
    "lake",
)


@dataclass(frozen=True)
class Sense:
    """One sense of an ambiguous English noun: its scene and German noun (gender "m/f/n/pl")."""

    english: str
    scene: str
    gender: str
    dative: str
    accusative: str


@dataclass(frozen=True)
class Subject:
    english: str
    german: str
    plural: bool
    human: bool


@dataclass(frozen=True)
class Verb:
    """A verb phrase: locative ones (``dative``) take a preposition, the others an object."""

    english: str
    german_singular: str
    german_plural: str
    dative: bool
    human_only: bool


@dataclass(frozen=True)
class Preposition:
    english: str
    german: str


@dataclass(frozen=True)
class Adjective:
    english: str
    german_stem: str


# Pairs of senses of one English noun, each tied to its own scene.
SENSES: tuple[tuple[Sense, Sense], ...] = (
    (
        Sense("bank", "river", "n", "ufer", "ufer"),
        Sense("bank", "city_street", "f", "bank", "bank"),
    ),
    (
        Sense("bat", "cave", "f", "fledermaus", "fledermaus"),
        Sense("bat", "baseball_field", "m", "schläger", "schläger"),
    ),
    (
        Sense("glasses", "kitchen", "pl", "gläsern", "gläser"),
        Sense("glasses", "optician", "f", "brille", "brille"),
    ),
    (
        Sense("court", "tennis_club", "m", "platz", "platz"),
        Sense("court", "courtroom", "n", "gericht", "gericht"),
    ),
    (
        Sense("pitcher", "baseball_field", "m", "werfer", "werfer"),
        Sense("pitcher", "kitchen", "m", "krug", "krug"),
    ),
    (
        Sense("plant", "garden", "f", "pflanze", "pflanze"),
        Sense("plant", "factory", "f", "fabrik", "fabrik"),
    ),
    (
        Sense("letter", "post_office", "m", "brief", "brief"),
        Sense("letter", "classroom", "m", "buchstaben", "buchstaben"),
    ),
    (
        Sense("crane", "construction_site", "m", "kran", "kran"),
        Sense("crane", "lake", "m", "kranich", "kranich"),
    ),
)
AMBIGUOUS_WORDS = tuple(pair[0].english for pair in SENSES)

SUBJECTS = (
    Subject("a man", "ein mann", False, True),
    Subject("a woman", "eine frau", False, True),
    Subject("a boy", "ein junge", False, True),
    Subject("a girl", "ein mädchen", False, True),
    Subject("a child", "ein kind", False, True),
    Subject("a worker", "ein arbeiter", False, True),
    Subject("a tourist", "ein tourist", False, True),
    Subject("a dog", "ein hund", False, False),
    Subject("two men", "zwei männer", True, True),
    Subject("two women", "zwei frauen", True, True),
    Subject("two children", "zwei kinder", True, True),
    Subject("two dogs", "zwei hunde", True, False),
)

VERBS = (
    Verb("standing", "steht", "stehen", dative=True, human_only=False),
    Verb("sitting", "sitzt", "sitzen", dative=True, human_only=False),
    Verb("waiting", "wartet", "warten", dative=True, human_only=False),
    Verb("resting", "ruht", "ruhen", dative=True, human_only=False),
    Verb("playing", "spielt", "spielen", dative=True, human_only=False),
    Verb("smiling", "lächelt", "lächeln", dative=True, human_only=True),
    Verb("looking at", "betrachtet", "betrachten", dative=False, human_only=False),
    Verb("photographing", "fotografiert", "fotografieren", dative=False, human_only=True),
    Verb("pointing at", "zeigt auf", "zeigen auf", dative=False, human_only=True),
)

PREPOSITIONS = (
    Preposition("next to", "neben"),
    Preposition("behind", "hinter"),
    Preposition("in front of", "vor"),
    Preposition("near", "bei"),
)

ADJECTIVES = (Adjective("old", "alt"), Adjective("small", "klein"), Adjective("big", "groß"))

_DATIVE_ARTICLE = {"m": "dem", "f": "der", "n": "dem", "pl": "den"}
_ACCUSATIVE_ARTICLE = {"m": "den", "f": "die", "n": "das", "pl": "die"}
# Weak adjective ending after a definite article (dative: always "-en").
_ACCUSATIVE_ENDING = {"m": "en", "f": "e", "n": "e", "pl": "en"}

# Feature model: relu(scene prototype + SUBJECT_WEIGHT * subject prototype + NOISE * noise).
SUBJECT_WEIGHT = 0.5
NOISE = 0.5
# The contrastive set's directory under the corpus (CoMMuTE's layout, features for images).
CONTRASTIVE_DIR = "commute"
# Draws per valid/test sentence to find an (English sentence, scene) pair unseen in earlier splits.
_NOVELTY_DRAWS = 100


def render_pair(
    subject: Subject,
    verb: Verb,
    preposition: Preposition | None,
    adjective: Adjective | None,
    sense: Sense,
) -> tuple[str, str]:
    """The English sentence and its German translation (lower-cased, tokenized)."""
    if verb.dative != (preposition is not None):
        raise ValueError(f"verb {verb.english!r}: a preposition is needed exactly for dative verbs")
    be = "are" if subject.plural else "is"
    german_verb = verb.german_plural if subject.plural else verb.german_singular
    english = [subject.english, be, verb.english]
    german = [subject.german, german_verb]
    if preposition is not None:
        english.append(preposition.english)
        german += [preposition.german, _DATIVE_ARTICLE[sense.gender]]
        ending, noun = "en", sense.dative
    else:
        german.append(_ACCUSATIVE_ARTICLE[sense.gender])
        ending, noun = _ACCUSATIVE_ENDING[sense.gender], sense.accusative
    english.append("the")
    if adjective is not None:
        english.append(adjective.english)
        german.append(adjective.german_stem + ending)
    english += [sense.english, "."]
    german += [noun, "."]
    return " ".join(english), " ".join(german)


def _sample_split(
    rng: np.random.Generator, size: int, seen: set[tuple[str, str]]
) -> tuple[list[str], list[str], list[str], list[int], list[int]]:
    """Draw a split: English, German and .ambig lines, scene and subject indices.

    Every sense occurs equally often (up to one). A sentence whose (English, scene) pair is in
    ``seen`` is redrawn, up to ``_NOVELTY_DRAWS`` times (afterwards it is kept).
    """
    senses = [sense for pair in SENSES for sense in pair]
    repeats = math.ceil(size / len(senses))
    plan = rng.permutation(np.tile(np.arange(len(senses)), repeats)[:size])
    english, german, ambig, scenes, subjects = [], [], [], [], []
    for sense_index in plan:
        sense = senses[sense_index]
        for _ in range(_NOVELTY_DRAWS):
            subject_index = int(rng.integers(len(SUBJECTS)))
            subject = SUBJECTS[subject_index]
            verbs = [verb for verb in VERBS if subject.human or not verb.human_only]
            verb = verbs[rng.integers(len(verbs))]
            preposition = PREPOSITIONS[rng.integers(len(PREPOSITIONS))] if verb.dative else None
            adjective = ADJECTIVES[rng.integers(len(ADJECTIVES))] if rng.random() < 0.5 else None
            en, de = render_pair(subject, verb, preposition, adjective, sense)
            if (en, sense.scene) not in seen:
                break
        noun = sense.dative if verb.dative else sense.accusative
        english.append(en)
        german.append(de)
        ambig.append(f"{sense.english}\t{noun}\t{sense.scene}")
        scenes.append(SCENES.index(sense.scene))
        subjects.append(subject_index)
    return english, german, ambig, scenes, subjects


def _features(
    rng: np.random.Generator,
    scene_prototypes: np.ndarray,
    subject_prototypes: np.ndarray,
    scenes: list[int],
    subjects: list[int],
) -> np.ndarray:
    """Non-negative pooled features (like ResNet pool5): the scene dominates, plus noise."""
    mixed = scene_prototypes[scenes] + SUBJECT_WEIGHT * subject_prototypes[subjects]
    return np.maximum(mixed + NOISE * rng.standard_normal(mixed.shape), 0.0)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def _check_arguments(sizes: dict[str, int] | None, feature_dim: int, dtype: str) -> dict[str, int]:
    unknown = set(sizes or {}) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; the splits are {SPLITS}")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    for split, size in sizes.items():
        if size < 1:
            raise ValueError(f"split {split} needs at least one sentence, got {size}")
    if feature_dim < 1:
        raise ValueError(f"feature_dim must be positive, got {feature_dim}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return sizes


def generate_demo_corpus(
    out_dir: str | Path,
    seed: int = 1,
    sizes: dict[str, int] | None = None,
    feature_dim: int = 512,
    dtype: str = "float32",
    contrastive_pairs: int = 48,
) -> dict:
    """Write the corpus under ``out_dir``; return its paths, sizes, seed, dim and dtype.

    ``paths["commute"]`` is the contrastive set of ``contrastive_pairs`` sentences (two lines
    each) in CoMMuTE's layout (:func:`_write_contrastive_set`).

    ``sizes`` maps split names to sentence counts (missing splits keep ``DEFAULT_SIZES``). The
    output depends only on the arguments; each split draws from its own random stream.
    """
    sizes = _check_arguments(sizes, feature_dim, dtype)
    out = Path(out_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(parents=True, exist_ok=True)
    # spawned seeds are fixed by their position: the contrastive set's (last) changes no split
    prototype_seed, *split_seeds, contrastive_seed = np.random.SeedSequence(seed).spawn(
        2 + len(SPLITS)
    )
    prototype_rng = np.random.default_rng(prototype_seed)
    scene_prototypes = prototype_rng.standard_normal((len(SCENES), feature_dim))
    subject_prototypes = prototype_rng.standard_normal((len(SUBJECTS), feature_dim))
    seen: set[tuple[str, str]] = set()
    paths: dict[str, dict[str, str]] = {}
    for split, split_seed in zip(SPLITS, split_seeds, strict=True):
        rng = np.random.default_rng(split_seed)
        english, german, ambig, scenes, subjects = _sample_split(rng, sizes[split], seen)
        seen.update((en, SCENES[scene]) for en, scene in zip(english, scenes, strict=True))
        features = _features(rng, scene_prototypes, subject_prototypes, scenes, subjects)
        paths[split] = {
            "en": str(out / "raw" / f"{split}.en"),
            "de": str(out / "raw" / f"{split}.de"),
            "ambig": str(out / "raw" / f"{split}.ambig"),
            "features": str(out / "features" / f"{split}.npy"),
        }
        _write_lines(Path(paths[split]["en"]), english)
        _write_lines(Path(paths[split]["de"]), german)
        _write_lines(Path(paths[split]["ambig"]), ambig)
        np.save(paths[split]["features"], features.astype(dtype))
    rng = np.random.default_rng(contrastive_seed)
    contrastive = _contrastive_lines(rng, contrastive_pairs)
    features = _features(rng, scene_prototypes, subject_prototypes, *contrastive[3:])
    paths["commute"] = _write_contrastive_set(out / CONTRASTIVE_DIR, contrastive, features, dtype)
    readme = out / "README.txt"
    readme.write_text(_readme_text(sizes, seed, feature_dim, dtype), encoding="utf-8")
    return {
        "out_dir": str(out),
        "seed": seed,
        "sizes": sizes,
        "feature_dim": feature_dim,
        "dtype": dtype,
        "paths": paths,
        "readme": str(readme),
    }


def _contrastive_lines(rng: np.random.Generator, pairs: int):
    """CoMMuTE-style lines: each sentence twice, once with the scene of each sense of its
    ambiguous noun, its two translations swapped between the two lines. Returns the English,
    correct and incorrect German lines, and the scene and subject of each line."""
    if pairs < 1:
        raise ValueError(f"contrastive_pairs must be positive, got {pairs}")
    english, correct, incorrect, scenes, subjects = [], [], [], [], []
    for number in range(pairs):
        senses = SENSES[number % len(SENSES)]
        subject_index = int(rng.integers(len(SUBJECTS)))
        subject = SUBJECTS[subject_index]
        verbs = [verb for verb in VERBS if subject.human or not verb.human_only]
        verb = verbs[rng.integers(len(verbs))]
        preposition = PREPOSITIONS[rng.integers(len(PREPOSITIONS))] if verb.dative else None
        adjective = ADJECTIVES[rng.integers(len(ADJECTIVES))] if rng.random() < 0.5 else None
        rendered = [render_pair(subject, verb, preposition, adjective, s) for s in senses]
        for this, other in ((0, 1), (1, 0)):
            english.append(rendered[this][0])
            correct.append(rendered[this][1])
            incorrect.append(rendered[other][1])
            scenes.append(SCENES.index(senses[this].scene))
            subjects.append(subject_index)
    return english, correct, incorrect, scenes, subjects


def _write_contrastive_set(directory: Path, lines, features: np.ndarray, dtype: str) -> dict:
    """``src.en``, ``correct.de``, ``incorrect.de`` as CoMMuTE has them, and ``features.npy``
    (row i: the image of line i) in place of its ``img.order`` and ``images/``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "dir": str(directory),
        "en": str(directory / "src.en"),
        "correct": str(directory / "correct.de"),
        "incorrect": str(directory / "incorrect.de"),
        "features": str(directory / "features.npy"),
    }
    for key, text in zip(("en", "correct", "incorrect"), lines[:3], strict=True):
        _write_lines(Path(paths[key]), text)
    np.save(paths["features"], features.astype(dtype))
    return paths


def _nouns(sense: Sense) -> str:
    """The German noun of a sense, with its accusative form where that differs."""
    if sense.accusative == sense.dative:
        return sense.dative
    return f"{sense.dative} (dative), {sense.accusative} (accusative)"


def _readme_text(sizes: dict[str, int], seed: int, feature_dim: int, dtype: str) -> str:
    split_sizes = ", ".join(f"{split} {sizes[split]}" for split in SPLITS)
    senses = "\n".join(
        f"  {a.english}: {_nouns(a)} ({a.scene}) / {_nouns(b)} ({b.scene})" for a, b in SENSES
    )
    return f"""Visually grounded English->German demo corpus (fairseq_mmt_adv.recipes.demo_corpus).

Generated with seed {seed}; sentences: {split_sizes}; features: {feature_dim} dims, {dtype}.

raw/{{split}}.en, raw/{{split}}.de  lower-cased, tokenized sentences, one a line
raw/{{split}}.ambig            english_word<TAB>correct_german_noun<TAB>scene, one a line
features/{{split}}.npy         array (N, {feature_dim}), row i = image of line i
{CONTRASTIVE_DIR}/                     a contrastive set in CoMMuTE's layout: src.en, correct.de,
                               incorrect.de (each sentence twice, one line per sense, the two
                               translations swapped) and features.npy (row i: line i's image)

Every sentence holds one ambiguous English noun; its German translation depends on the scene,
which only the image feature shows (each sense is half of the sentences):
{senses}
Features: relu(scene prototype + {SUBJECT_WEIGHT} * subject prototype + {NOISE} * gaussian noise).
"""


def ambiguous_word_accuracy(hypotheses: list[str], ambig_lines: list[str]) -> float:
    """Fraction of hypotheses holding the correct German noun of their ``.ambig`` line as a token.

    Hypotheses must be detokenized from subwords (BPE) but stay split on spaces as the references.
    """
    if len(hypotheses) != len(ambig_lines):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(ambig_lines)} .ambig lines")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    correct = sum(
        line.rstrip("\n").split("\t")[1] in hypothesis.split()
        for hypothesis, line in zip(hypotheses, ambig_lines, strict=True)
    )
    return correct / len(hypotheses)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="directory to write raw/, features/ and README.txt into")
    parser.add_argument("--seed", type=int, default=1)
    for split in SPLITS:
        parser.add_argument(
            f"--{split}", type=int, default=DEFAULT_SIZES[split], help=f"{split} sentences"
        )
    parser.add_argument("--feature-dim", type=int, default=512)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    args = parser.parse_args(argv)
    result = generate_demo_corpus(
        args.out_dir,
        seed=args.seed,
        sizes={split: getattr(args, split) for split in SPLITS},
        feature_dim=args.feature_dim,
        dtype=args.dtype,
    )
    sizes = ", ".join(f"{split} {size}" for split, size in result["sizes"].items())
    print(
        f"wrote {result['out_dir']}: {sizes} sentences, "
        f"{result['feature_dim']}-dim {result['dtype']} features (seed {result['seed']})"
    )


if __name__ == "__main__":
    main()
