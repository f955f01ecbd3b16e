"""Tests of the visually grounded demo corpus generator (numpy only, a few seconds)."""

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.recipes import demo_corpus as dc

MODULE_PATH = Path(dc.__file__)

SMALL = {"train": 300, "valid": 31, "test": 45}


def read_lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def corpus_bytes(out_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(out_dir)): path.read_bytes()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default corpus (seed 1, default sizes and dim)."""
    return dc.generate_demo_corpus(tmp_path_factory.mktemp("demo"))


def split_data(corpus: dict, split: str) -> tuple[list[str], list[str], list[str], np.ndarray]:
    paths = corpus["paths"][split]
    return (
        read_lines(paths["en"]),
        read_lines(paths["de"]),
        read_lines(paths["ambig"]),
        np.load(paths["features"]),
    )


def test_layout_and_sizes(corpus: dict) -> None:
    out = Path(corpus["out_dir"])
    expected = {"README.txt"} | {
        f"raw/{split}.{ext}" for split in dc.SPLITS for ext in ("en", "de", "ambig")
    }
    expected |= {f"features/{split}.npy" for split in dc.SPLITS}
    expected |= {f"commute/{name}" for name in ("src.en", "correct.de", "incorrect.de")}
    expected |= {"commute/features.npy"}
    assert set(corpus_bytes(out)) == expected
    assert corpus["sizes"] == {"train": 4000, "valid": 203, "test": 301}
    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "seed 1" in readme and "train 4000, valid 203, test 301" in readme and "512" in readme


@pytest.mark.parametrize("split", dc.SPLITS)
def test_aligned_nonempty_lines_and_features(corpus: dict, split: str) -> None:
    english, german, ambig, features = split_data(corpus, split)
    size = corpus["sizes"][split]
    assert len(english) == len(german) == len(ambig) == features.shape[0] == size
    assert all(line.strip() for line in english + german + ambig)
    assert features.shape == (size, 512) and features.dtype == np.float32
    assert np.isfinite(features).all() and (features >= 0).all()
    for en, de, line in zip(english, german, ambig, strict=True):
        word, noun, scene = line.split("\t")
        assert en == en.lower() and de == de.lower()
        assert en.endswith(" .") and de.endswith(" .")
        assert word in en.split() and noun in de.split() and scene in dc.SCENES
        assert sum(token in dc.AMBIGUOUS_WORDS for token in en.split()) == 1


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    dc.generate_demo_corpus(tmp_path / "a", seed=7, sizes=SMALL, feature_dim=32)
    dc.generate_demo_corpus(tmp_path / "b", seed=7, sizes=SMALL, feature_dim=32)
    dc.generate_demo_corpus(tmp_path / "c", seed=8, sizes=SMALL, feature_dim=32)
    first, again, other = (corpus_bytes(tmp_path / name) for name in "abc")
    assert first == again
    assert set(first) == set(other)
    differing = [name for name in first if first[name] != other[name]]
    assert set(differing) == set(first)  # README.txt names the seed


def test_render_pair_grammar() -> None:
    def find(items, english):
        return next(item for item in items if item.english == english)

    def sense(word: str, scene: str):
        return next(s for pair in dc.SENSES for s in pair if (s.english, s.scene) == (word, scene))

    man, women = find(dc.SUBJECTS, "a man"), find(dc.SUBJECTS, "two women")
    standing, looking = find(dc.VERBS, "standing"), find(dc.VERBS, "looking at")
    next_to, old = find(dc.PREPOSITIONS, "next to"), find(dc.ADJECTIVES, "old")
    assert dc.render_pair(man, standing, next_to, None, sense("bank", "river")) == (
        "a man is standing next to the bank .",
        "ein mann steht neben dem ufer .",
    )
    assert dc.render_pair(man, standing, next_to, old, sense("bank", "city_street")) == (
        "a man is standing next to the old bank .",
        "ein mann steht neben der alten bank .",
    )
    assert dc.render_pair(women, looking, None, old, sense("glasses", "kitchen")) == (
        "two women are looking at the old glasses .",
        "zwei frauen betrachten die alten gläser .",
    )
    assert dc.render_pair(women, looking, None, old, sense("court", "courtroom"))[1] == (
        "zwei frauen betrachten das alte gericht ."
    )
    with pytest.raises(ValueError):
        dc.render_pair(man, looking, next_to, None, sense("bank", "river"))


def test_senses_tied_to_scenes_and_balanced(corpus: dict) -> None:
    scenes_of_word: dict[str, set[str]] = {}
    for first, second in dc.SENSES:
        assert first.english == second.english and first.scene != second.scene
        scenes_of_word[first.english] = {first.scene, second.scene}
    for split in dc.SPLITS:
        ambig = [line.split("\t") for line in split_data(corpus, split)[2]]
        assert all(scene in scenes_of_word[word] for word, _, scene in ambig)
        first_sense = sum(
            scene == pair[0].scene
            for word, _, scene in ambig
            for pair in dc.SENSES
            if pair[0].english == word
        )
        assert abs(first_sense / len(ambig) - 0.5) < 0.01
    train = Counter(
        (word, scene)
        for word, _, scene in (line.split("\t") for line in split_data(corpus, "train")[2])
    )
    for first, second in dc.SENSES:
        share = train[first.english, first.scene] / (
            train[first.english, first.scene] + train[first.english, second.scene]
        )
        assert 0.45 < share < 0.55


def test_scene_recoverable_from_features(corpus: dict) -> None:
    _, _, train_ambig, train_features = split_data(corpus, "train")
    _, _, test_ambig, test_features = split_data(corpus, "test")
    train_scenes = np.array([dc.SCENES.index(line.split("\t")[2]) for line in train_ambig])
    test_scenes = np.array([dc.SCENES.index(line.split("\t")[2]) for line in test_ambig])
    centroids = np.stack([train_features[train_scenes == s].mean(0) for s in range(len(dc.SCENES))])
    distances = ((test_features[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == test_scenes).mean()
    assert accuracy > 0.95


def test_heldout_splits_do_not_repeat_train(corpus: dict) -> None:
    def pairs(split: str) -> list[tuple[str, str]]:
        english, _, ambig, _ = split_data(corpus, split)
        return [(en, line.split("\t")[2]) for en, line in zip(english, ambig, strict=True)]

    train = set(pairs("train"))
    valid, test = pairs("valid"), pairs("test")
    assert sum(pair in train for pair in valid + test) / len(valid + test) < 0.01
    assert not set(valid) & set(test)


def test_ambiguous_word_accuracy(corpus: dict) -> None:
    _, german, ambig, _ = split_data(corpus, "test")
    assert dc.ambiguous_word_accuracy(german, ambig) == 1.0
    other = {}
    first = {}
    for a, b in dc.SENSES:
        for x, y in ((a, b), (b, a)):
            other[x.english, x.dative] = y.dative
            other[x.english, x.accusative] = y.accusative
            first[x.english, x.dative] = a.dative
            first[x.english, x.accusative] = a.accusative

    def replace(table: dict) -> list[str]:
        hypotheses = []
        for de, line in zip(german, ambig, strict=True):
            word, noun, _ = line.split("\t")
            tokens = de.split()
            tokens[tokens.index(noun)] = table[word, noun]
            hypotheses.append(" ".join(tokens))
        return hypotheses

    assert dc.ambiguous_word_accuracy(replace(other), ambig) == 0.0
    text_only_guess = dc.ambiguous_word_accuracy(replace(first), ambig)
    assert 0.4 < text_only_guess < 0.6
    with pytest.raises(ValueError):
        dc.ambiguous_word_accuracy(german[:-1], ambig)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        dc.generate_demo_corpus(tmp_path, sizes={"dev": 3})
    with pytest.raises(ValueError):
        dc.generate_demo_corpus(tmp_path, sizes={"valid": 0})
    with pytest.raises(ValueError):
        dc.generate_demo_corpus(tmp_path, feature_dim=0)
    with pytest.raises(ValueError):
        dc.generate_demo_corpus(tmp_path, dtype="float64")


def test_imports_only_numpy_and_stdlib() -> None:
    tree = ast.parse(MODULE_PATH.read_text(encoding="utf-8"))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert "numpy" in modules
    assert not modules - {"numpy"} - sys.stdlib_module_names


def test_cli_float16(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--seed", "3", "--train", "40", "--valid", "5", "--test", "7", "--feature-dim", "16"]
    script = (
        "import runpy, sys; sys.argv = sys.argv[1:]; "
        "runpy.run_module('fairseq_mmt_adv.recipes.demo_corpus', run_name='__main__'); "
        f"{REGISTERED}"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "demo_corpus", str(out), *args, "--dtype", "float16"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "train 40, valid 5, test 7" in result.stdout
    features = np.load(out / "features" / "valid.npy")
    assert features.shape == (5, 16) and features.dtype == np.float16
    assert len(read_lines(str(out / "raw" / "test.de"))) == 7
    dc.main([str(tmp_path / "direct"), *args, "--dtype", "float16"])
    assert corpus_bytes(tmp_path / "direct") == corpus_bytes(out)
