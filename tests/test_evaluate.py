"""fairseq-mmt-evaluate on demo-corpus models, one that fuses the image (ctx-mul) and one that
does not (--visual-fusion none): contrastive accuracy on the demo's CoMMuTE-layout set (well
above 50 % and exactly 50 %), CoMMuTE's score files, teacher forcing as fairseq scores it,
incongruent images and masked words against fairseq-generate, and the bad input refused."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fairseq.data import Dictionary
from helpers import (
    PACKAGE_DIR,
    captured_log,
    cli_env,
    generate,
    hypotheses,
    small_demo_corpus,
    train,
)
from helpers import single_thread as one_thread

from fairseq_mmt_adv import MultimodalTranslator
from fairseq_mmt_adv.evaluation import cli, split_decoding
from fairseq_mmt_adv.evaluation.common import EvaluationInputError
from fairseq_mmt_adv.evaluation.mask_dictionary import mask, read_dictionary, words
from fairseq_mmt_adv.recipes.demo_corpus import SENSES, generate_demo_corpus
from fairseq_mmt_adv.translation.translator import TranslationInputError

DIM = 16


def task_flags(demo: Path) -> list[str]:
    return ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation", "--visual-features",
            str(demo / "features")]  # fmt: skip


def trained(demo: Path, save_dir: Path, *flags: str) -> Path:
    train(
        str(demo / "bin"), *task_flags(demo), "--arch", "cgru_mmt_small", "--optimizer", "adam",
        "--lr", "0.005", "--batch-size", "32", "--max-epoch", "3", "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", "--seed", "1", *flags,
    )  # fmt: skip
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return small_demo_corpus(tmp_path_factory.mktemp("demo"), DIM)


@pytest.fixture(scope="module")
def visual(demo, tmp_path_factory) -> Path:
    return trained(demo, tmp_path_factory.mktemp("ctx-mul"))


@pytest.fixture(scope="module")
def text_only(demo, tmp_path_factory) -> Path:
    return trained(demo, tmp_path_factory.mktemp("none"), "--visual-fusion", "none")


def contrastive_files(demo: Path) -> list[str]:
    c = demo / "commute"
    return ["--source", str(c / "src.en"), "--correct", str(c / "correct.de"),
            "--incorrect", str(c / "incorrect.de")]  # fmt: skip


def evaluate(*argv, json_path: Path) -> dict:
    with one_thread():
        assert cli.main([str(a) for a in argv] + ["--cpu", "--json", str(json_path)]) == 0
    return json.loads(json_path.read_text())


def contrastive(demo, model, tmp_path, *extra) -> dict:
    features = demo / "commute" / "features.npy"
    return evaluate(
        "contrastive", demo / "bin", "--path", model, *contrastive_files(demo),
        "--features", features, *extra, json_path=tmp_path / "contrastive.json",
    )  # fmt: skip


def test_the_demo_set_is_in_commute_layout(demo):
    """Each sentence twice, consecutive, one line per sense, the candidates swapped."""
    c = demo / "commute"
    src, good, bad = (
        (c / name).read_text().splitlines() for name in ("src.en", "correct.de", "incorrect.de")
    )
    assert len(src) == len(good) == len(bad) == len(np.load(c / "features.npy")) > 0
    for a in range(0, len(src), 2):
        assert src[a] == src[a + 1] and good[a] == bad[a + 1] and good[a + 1] == bad[a]
        assert good[a] != bad[a]
    nouns = {noun for pair in SENSES for sense in pair for noun in (sense.dative, sense.accusative)}
    assert all(set(line.split()) & nouns for line in good)


def test_the_contrastive_set_changes_no_split(tmp_path):
    small = generate_demo_corpus(tmp_path / "a", sizes={"train": 20}, contrastive_pairs=2)
    large = generate_demo_corpus(tmp_path / "b", sizes={"train": 20}, contrastive_pairs=9)
    for split, paths in small["paths"].items():
        if split != "commute":
            assert Path(paths["de"]).read_bytes() == Path(large["paths"][split]["de"]).read_bytes()
    assert len(Path(large["paths"]["commute"]["en"]).read_text().splitlines()) == 18


def test_a_visual_model_beats_chance_and_a_text_only_one_scores_exactly_half(
    demo, visual, text_only, tmp_path, capsys
):
    seeing = contrastive(demo, visual, tmp_path)
    table = capsys.readouterr().out
    assert seeing["items"] == 96 and len(seeing["lines"]) == 96
    assert seeing["accuracy"] > 75 and seeing["interval"][0] > 60
    assert seeing["interval"][0] <= seeing["accuracy"] <= seeing["interval"][1]
    assert seeing["pairs"]["items"] == 48 and seeing["pairs"]["accuracy"] > 50
    assert f"{seeing['accuracy']:.2f} %" in table and "pairs both right" in table
    # the text-only model: CoMMuTE's layout, no image at all
    blind = evaluate(
        "contrastive", demo / "bin", "--path", text_only, "--commute", demo / "commute",
        "--target-lang", "de", json_path=tmp_path / "blind.json",
    )  # fmt: skip
    assert blind["accuracy"] == 50.0 and blind["pairs"]["accuracy"] == 0.0
    lines = blind["lines"]
    assert all(lines[a]["correct"] == lines[a + 1]["incorrect"] for a in range(0, 96, 2))


def commute_accuracy(directory: Path) -> float:
    """CoMMuTE's evaluate.py, as its README documents it: a line is right when the correct
    translation's perplexity is lower than the incorrect one's; the share of right lines."""
    correct = [float(v) for v in (directory / "correct.txt").read_text().split()]
    incorrect = [float(v) for v in (directory / "incorrect.txt").read_text().split()]
    assert len(correct) == len(incorrect)
    return sum(c < i for c, i in zip(correct, incorrect, strict=True)) / len(correct)


@pytest.mark.parametrize("mode", ["token", "sum"])
def test_commute_score_files_give_the_same_accuracy(demo, visual, tmp_path, mode):
    found = contrastive(demo, visual, tmp_path, "--score", mode, "--scores", tmp_path / "s")
    assert commute_accuracy(tmp_path / "s") == pytest.approx(found["accuracy"] / 100)
    first = float((tmp_path / "s" / "correct.txt").read_text().split()[0])
    line = found["lines"][0]["correct"]
    assert first == pytest.approx(math.exp(-line) if mode == "token" else -line)


def test_scores_are_fairseqs_teacher_forced_log_probabilities(demo, visual, tmp_path):
    """The test split's references, scored with their images, as fairseq-generate
    --score-reference scores them (H- scores: log2 probability per token)."""
    raw = demo / "raw"
    other = tmp_path / "other.de"  # each line's incorrect candidate: the next reference
    references = (raw / "test.de").read_text().splitlines()
    other.write_text("\n".join(references[1:] + references[:1]) + "\n")
    found = evaluate(
        "contrastive", demo / "bin", "--path", visual, "--source", raw / "test.en",
        "--correct", raw / "test.de", "--incorrect", other,
        "--features", demo / "features" / "test.npy", "--batch-size", "7",
        json_path=tmp_path / "test.json",
    )  # fmt: skip
    scoring = ("--gen-subset", "test", "--score-reference", "--batch-size", "16")
    output = generate(str(demo / "bin"), *task_flags(demo), "--path", str(visual), *scoring)
    scores = {
        int(line.split("\t")[0][2:]): float(line.split("\t")[1])
        for line in output.splitlines()
        if line.startswith("H-")
    }
    ours = [line["correct"] / math.log(2) for line in found["lines"]]
    assert ours == pytest.approx([scores[i] for i in range(len(ours))], abs=1e-4)


def load(demo: Path, checkpoint: Path) -> MultimodalTranslator:
    return MultimodalTranslator.from_pretrained(
        checkpoint.parent, checkpoint.name, str(demo / "bin"), cpu=True, batch_size=16
    )


def test_the_split_decodes_as_fairseq_generate_does(demo, visual):
    """Own images: fairseq-generate's output; permutation 0: --shuffle-visual-features'."""
    translator = load(demo, visual)
    split = split_decoding.load_split(translator, "test", None)
    run = ("--path", str(visual), "--gen-subset", "test", "--beam", "5", "--batch-size", "16")
    shuffled = ("--shuffle-visual-features",)
    for features, extra in ((split.congruent(), ()), (split.incongruent(0), shuffled)):
        output = generate(str(demo / "bin"), *task_flags(demo), *run, *extra)
        expected = hypotheses(output)
        with one_thread():
            found = split_decoding.decode(translator, split.sources, features, 5, None)
        assert found == [expected[i] for i in range(len(found))]
    assert not np.array_equal(split.incongruent(0), split.incongruent(1))
    assert split.references == (demo / "raw" / "test.de").read_text().splitlines()


def test_incongruent_images_cost_a_visual_model_only(demo, visual, text_only, tmp_path, capsys):
    flags = ("--gen-subset", "test", "--permutations", "2")
    seeing = evaluate("incongruent", demo / "bin", "--path", visual, *flags,
                      json_path=tmp_path / "v.json")  # fmt: skip
    assert "BLEU, own images" in capsys.readouterr().out
    assert seeing["delta"] == pytest.approx(seeing["congruent"] - seeing["incongruent"])
    assert seeing["delta"] > 2 and seeing["p_value"] < 0.05
    assert len(seeing["incongruent_scores"]) == 2 and seeing["incongruent_std"] >= 0
    blind = evaluate("incongruent", demo / "bin", "--path", text_only, *flags,
                     json_path=tmp_path / "t.json")  # fmt: skip
    assert blind["delta"] == 0 and blind["p_value"] == 1 and blind["incongruent_std"] == 0


def test_masked_words_come_back_with_the_right_image(demo, visual, text_only, tmp_path):
    dictionary = tmp_path / "ambiguous.tsv"
    dictionary.write_text(
        "".join(f"{a.english}\t{a.dative} {a.accusative} {b.dative}\n" for a, b in SENSES)
    )
    flags = ("--gen-subset", "test", "--mask-dictionary", dictionary)
    seeing = evaluate("masked", demo / "bin", "--path", visual, *flags,
                      json_path=tmp_path / "v.json")  # fmt: skip
    assert seeing["items"] == 45 and seeing["congruent"] > seeing["incongruent"] + 20
    blind = evaluate("masked", demo / "bin", "--path", text_only, *flags,
                     json_path=tmp_path / "t.json")  # fmt: skip
    assert blind["congruent"] == blind["incongruent"]
    with pytest.raises(EvaluationInputError, match="no sentence of test holds a word"):
        evaluate("masked", demo / "bin", "--path", visual, "--gen-subset", "test",
                 json_path=tmp_path / "colours.json")  # fmt: skip


def test_masking_joins_bpe_pieces_and_reads_the_dictionary(tmp_path):
    vocabulary = Dictionary()
    for symbol in ("a", "re@@", "d", "car", "redd@@", "ish"):
        vocabulary.add_symbol(symbol)
    tokens = vocabulary.encode_line("a re@@ d car redd@@ ish", add_if_not_exist=False)
    assert [w for w, _ in words(vocabulary, tokens)] == ["a", "red", "car", "reddish"]
    masked, found = mask(vocabulary, tokens, {"red": {"rot"}})
    assert found == ["red"]
    assert vocabulary.string(masked) == "a <unk> car redd@@ ish"
    (tmp_path / "bad.tsv").write_text("red\trot rote\nblue bleu\n")
    with pytest.raises(EvaluationInputError, match=r"bad.tsv, line 2"):
        read_dictionary(str(tmp_path / "bad.tsv"))


def test_the_command_keeps_stdout_for_the_table(demo, visual, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", cli.__name__, "contrastive", str(demo / "bin"), "--path",
         str(visual), "--commute", str(demo / "commute"), "--target-lang", "de", "--features",
         str(demo / "commute" / "features.npy"), "--cpu"],
        capture_output=True, text=True, env=cli_env(), check=True,
    )  # fmt: skip
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "lines",
        "accuracy",
        "pairs",
    ]
    assert "| INFO |" in result.stderr and "| INFO |" not in result.stdout


# ---------------------------------------------------------------------- bad input


def copy_set(demo: Path, tmp_path: Path) -> Path:
    out = tmp_path / "set"
    out.mkdir()
    for name in ("src.en", "correct.de", "incorrect.de"):
        (out / name).write_text((demo / "commute" / name).read_text())
    return out


def refused(demo, model, tmp_path, *argv) -> str:
    with pytest.raises(TranslationInputError) as error:  # EvaluationInputError's base
        evaluate("contrastive", demo / "bin", "--path", model, *argv, json_path=tmp_path / "j")
    assert not (tmp_path / "j").exists()  # nothing scored in silence
    return str(error.value)


def test_candidate_files_of_other_lengths_are_named(demo, visual, tmp_path):
    s = copy_set(demo, tmp_path)
    lines = (s / "incorrect.de").read_text().splitlines()
    (s / "incorrect.de").write_text("\n".join(lines[:-1]) + "\n")
    message = refused(demo, visual, tmp_path, "--commute", s, "--target-lang", "de",
                      "--features", demo / "commute" / "features.npy")  # fmt: skip
    assert f"{s / 'incorrect.de'} has {len(lines) - 1}" in message
    assert f"{s / 'correct.de'} has {len(lines)}" in message


def test_an_empty_line_is_named(demo, visual, tmp_path):
    s = copy_set(demo, tmp_path)
    lines = (s / "src.en").read_text().splitlines()
    lines[4] = " "
    (s / "src.en").write_text("\n".join(lines) + "\n")
    message = refused(demo, visual, tmp_path, "--commute", s, "--target-lang", "de",
                      "--features", demo / "commute" / "features.npy")  # fmt: skip
    assert f"{s / 'src.en'}, line 5: the line is empty" in message


def test_features_of_another_row_count_are_named(demo, visual, tmp_path):
    few = tmp_path / "few.npy"
    np.save(few, np.load(demo / "commute" / "features.npy")[:10])
    message = refused(demo, visual, tmp_path, *contrastive_files(demo), "--features", few)
    assert f"--features {few} has 10 rows for 96" in message


def test_an_image_order_line_without_its_image_is_named(demo, visual, text_only, tmp_path):
    s = copy_set(demo, tmp_path)
    (s / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(s / "images" / "one.jpg")
    (s / "img.order").write_text("one.jpg\n" * 7 + "missing.jpg\n" + "one.jpg\n" * 88)
    message = refused(demo, visual, tmp_path, "--commute", s, "--target-lang", "de")
    assert f"{s / 'img.order'}, line 8: no image {s / 'images' / 'missing.jpg'}" in message
    # a text-only model ignores the images, and says so once
    with captured_log() as log:
        found = evaluate("contrastive", demo / "bin", "--path", text_only, "--commute", s,
                         "--target-lang", "de", json_path=tmp_path / "t.json")  # fmt: skip
    assert found["accuracy"] == 50.0
    assert log.getvalue().count("the images play no part") == 1


def test_a_visual_model_without_images_is_refused(demo, visual, tmp_path):
    message = refused(demo, visual, tmp_path, *contrastive_files(demo))
    assert "--features FILE.npy" in message and "--images DIR --image-order FILE" in message


def test_an_unknown_command_and_equal_candidates_are_refused(demo, visual, tmp_path):
    with pytest.raises(TranslationInputError, match="unknown command 'contrast'.*contrastive"):
        cli.main(["contrast", str(demo / "bin")])
    s = copy_set(demo, tmp_path)
    lines = (s / "correct.de").read_text().splitlines()
    (s / "incorrect.de").write_text("\n".join(lines) + "\n")
    message = refused(demo, visual, tmp_path, "--commute", s, "--target-lang", "de",
                      "--features", demo / "commute" / "features.npy")  # fmt: skip
    assert "line 1: the two candidates are the same" in message
