"""Translate new captions: MultimodalTranslator and fairseq-mmt-translate against
fairseq-generate on demo-corpus models (plain, BPE + Moses from preprocessing.json or from
fairseq's --tokenizer/--bpe, images through the extractor, text only); diverse beam search; and
the bad input they refuse, named."""

import functools
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    PACKAGE_DIR,
    cli_env,
    generate,
    hypotheses,
    preprocess,
    single_thread,
    small_demo_corpus,
    train,
)
from PIL import Image

from fairseq_mmt_adv import MultimodalTranslator
from fairseq_mmt_adv.recipes import moses
from fairseq_mmt_adv.translation import cli as translate_cli
from fairseq_mmt_adv.translation import image_features as imf
from fairseq_mmt_adv.translation import text_pipeline
from fairseq_mmt_adv.translation.text_pipeline import TextPipeline
from fairseq_mmt_adv.translation.translator import TranslationInputError

DIM = 16
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "extract_features.py"


def task_flags(demo: Path) -> list[str]:
    return ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation", "--visual-features",
            str(demo / "features")]  # fmt: skip


def trained_model(demo: Path, save_dir: Path, data: str = "bin", *flags: str) -> Path:
    """cgru_mmt_small, 3 epochs (ctx-mul unless ``flags`` say otherwise)."""
    train(
        str(demo / data), *task_flags(demo), "--arch", "cgru_mmt_small", "--optimizer", "adam",
        "--lr", "0.005", "--batch-size", "32", "--max-epoch", "3", "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", "--seed", "1", *flags,
    )  # fmt: skip
    return save_dir


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return small_demo_corpus(tmp_path_factory.mktemp("demo"), DIM)


@pytest.fixture(scope="module")
def multimodal(demo, tmp_path_factory) -> Path:
    return trained_model(demo, tmp_path_factory.mktemp("ctx-mul"))


@functools.cache
def reference(demo: Path, model: Path, data: str = "bin", *extra: str) -> list[str]:
    """fairseq-generate's best hypotheses of the test split, in sentence order."""
    output = generate(
        str(demo / data), *task_flags(demo), "--path", str(model / "checkpoint_last.pt"),
        "--gen-subset", "test", "--beam", "5", "--batch-size", "16", *extra,
    )  # fmt: skip
    found = hypotheses(output)
    return [found[i] for i in range(len(found))]


def captions(demo: Path) -> list[str]:
    return (demo / "raw" / "test.en").read_text().splitlines()


def demo_features(demo: Path) -> np.ndarray:
    return np.load(demo / "features" / "test.npy")


def load(demo: Path, model: Path, data: str = "bin", **overrides) -> MultimodalTranslator:
    return MultimodalTranslator.from_pretrained(
        model, "checkpoint_last.pt", str(demo / data), cpu=True, **overrides
    )


def test_python_translations_equal_fairseq_generates(demo, multimodal):
    expected = reference(demo, multimodal)
    features = demo_features(demo)
    translator = load(demo, multimodal, batch_size=7)  # batches of mixed lengths
    with single_thread():
        assert translator.translate(captions(demo), features=features, beam=5) == expected
        hypos = translator.generate(
            [translator.encode(c) for c in captions(demo)], beam=5, features=features
        )
        one = translator.translate(captions(demo)[3], features=features[3])
        single = translator.generate(translator.encode(captions(demo)[3]), features=features[3])
    assert [translator.string(h[0]["tokens"]) for h in hypos] == expected
    assert all(len(h) == 5 and h[0]["score"] >= h[-1]["score"] for h in hypos)  # n-best
    assert one == expected[3] and translator.string(single[0]["tokens"]) == expected[3]
    assert translator.translate([captions(demo)[3]], features=features[3:4], beam=5) == [one]


def test_the_command_prints_one_translation_per_line(demo, multimodal, tmp_path, capsys):
    source = tmp_path / "input.en"
    source.write_text((demo / "raw" / "test.en").read_text())
    argv = [str(demo / "bin"), "--path", str(multimodal / "checkpoint_last.pt"), "--input",
            str(source), "--features", str(demo / "features" / "test.npy"), "--beam", "5",
            "--batch-size", "16", "--cpu"]  # fmt: skip
    with single_thread():
        assert translate_cli.main(argv) == 0
        out = capsys.readouterr().out
        assert out.splitlines() == reference(demo, multimodal)
        translate_cli.main([*argv, "--print-scores", "--nbest", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines[:6]] == ["H-0", "D-0", "P-0", "H-0", "D-0", "P-0"]
    assert len(lines) == 6 * len(captions(demo))
    assert lines[0].split("\t")[2] == reference(demo, multimodal)[0]
    scores = [float(line.split("\t")[1]) for line in lines if line.startswith("H-0")]
    assert scores[0] >= scores[1] and scores[0] < 0  # base-2 log probabilities, best first


def test_the_installed_command_keeps_stdout_for_translations(demo, multimodal, tmp_path):
    """As a shell runs it: the input on stdin, translations alone on stdout, logs on stderr."""
    command = Path(sys.executable).parent / "fairseq-mmt-translate"
    launcher = (
        [str(command)] if command.exists() else [sys.executable, "-m", translate_cli.__name__]
    )
    five = captions(demo)[:5]
    np.save(tmp_path / "five.npy", demo_features(demo)[:5])
    result = subprocess.run(
        [*launcher, str(demo / "bin"), "--path", str(multimodal / "checkpoint_last.pt"),
         "--features", str(tmp_path / "five.npy"), "--beam", "5", "--cpu"],
        input="\n".join(five) + "\n", capture_output=True, text=True, env=cli_env(), check=True,
    )  # fmt: skip
    assert result.stdout.splitlines() == reference(demo, multimodal)[:5]
    assert "| INFO | fairseq_mmt_adv.translate | translated 5 captions" in result.stderr


def test_diverse_beam_search_in_the_translator(demo, multimodal):
    """fairseq 0.12's DiverseBeamSearch fails after the first batch; mended, the translator
    gives fairseq-generate's hypotheses over several batches."""
    diverse = ("--beam", "4", "--diverse-beam-groups", "2", "--diverse-beam-strength", "0.5")
    expected = reference(demo, multimodal, "bin", *diverse)
    translator = load(demo, multimodal, batch_size=8)
    with single_thread():
        hypos = translator.generate(
            [translator.encode(c) for c in captions(demo)], beam=4, features=demo_features(demo),
            diverse_beam_groups=2, diverse_beam_strength=0.5,
        )  # fmt: skip
    assert len(hypos) == len(captions(demo)) and all(len(h) == 4 for h in hypos)
    assert [translator.string(h[0]["tokens"]) for h in hypos] == expected


def test_a_no_v_model_translates_without_any_image(demo, tmp_path, capsys):
    """--visual-fusion none, trained with reconstruction (Table 4's "no v"): no image needed."""
    model = trained_model(
        demo, tmp_path / "mse-nov", "bin", "--visual-fusion", "none",
        "--criterion", "adversarial_reconstruction", "--reconstruction", "mse",
    )  # fmt: skip
    translator = load(demo, model)
    assert not translator.uses_image
    source = tmp_path / "captions.en"
    source.write_text("\n".join(captions(demo)) + "\n")
    argv = [str(demo / "bin"), "--path", str(model / "checkpoint_last.pt"), "--input",
            str(source), "--cpu"]  # fmt: skip
    with single_thread():
        assert translator.translate(captions(demo)) == reference(demo, model)
        assert translate_cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == reference(demo, model)


def test_a_transformer_translates_as_fairseq_generate(demo, tmp_path):
    """transformer_mmt (gated fusion), made tiny: the translator is not the cGRU's alone."""
    tiny = shlex.split(
        "--arch transformer_mmt_tiny --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
        "--decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 2 --decoder-attention-heads 2 --visual-fusion gated "
        "--max-epoch 2"
    )
    model = trained_model(demo, tmp_path / "gated", "bin", *tiny)
    expected = reference(demo, model, "bin", "--max-len-b", "12")
    translator = load(demo, model, batch_size=7, max_len_b=12)
    assert translator.uses_image
    with single_thread():
        assert translator.translate(captions(demo), features=demo_features(demo)) == expected


def test_bad_input_is_named(demo, multimodal, tmp_path):
    translator = load(demo, multimodal)
    features = demo_features(demo)
    two = captions(demo)[:2]
    with pytest.raises(TranslationInputError, match="give images= .* or features="):
        translator.translate(two)
    with pytest.raises(TranslationInputError, match="caption 2 is empty"):
        translator.translate([two[0], "  "], features=features[:2])
    with pytest.raises(TranslationInputError, match="has 3 rows for 2 captions"):
        translator.translate(two, features=features[:3])
    with pytest.raises(TranslationInputError, match=r"pooled \(D=8\) features, but the model"):
        translator.translate(two, features=features[:2, :8])
    nan = features[:2].copy()
    nan[1, 0] = np.nan
    with pytest.raises(TranslationInputError, match="row 1 .* NaN"):
        translator.translate(two, features=nan)
    image = tmp_path / "image.png"
    Image.new("RGB", (32, 32)).save(image)
    with pytest.raises(TranslationInputError, match="does not record which extractor"):
        translator.translate(two, images=[image, image])  # synthetic demo features: unknown
    wrong_rows = tmp_path / "rows.npy"
    np.save(wrong_rows, features[:5])
    source = tmp_path / "in.en"
    source.write_text("\n".join(two) + "\n")
    base = [str(demo / "bin"), "--path", str(multimodal / "checkpoint_last.pt"), "--cpu"]
    with pytest.raises(TranslationInputError, match=f"{wrong_rows} has 5 rows for 2 captions"):
        translate_cli.main([*base, "--input", str(source), "--features", str(wrong_rows)])
    # the command line's own words: its input lines and --features, not the Python parameters
    with pytest.raises(TranslationInputError, match="fuses the image: give each input line") as e:
        translate_cli.main([*base, "--input", str(source)])
    assert "'caption<TAB>image path'" in str(e.value) and "--features FILE.npy" in str(e.value)
    assert "images=" not in str(e.value)
    with pytest.raises(TranslationInputError, match=r"bpe=subword_nmt needs BPE codes: give"):
        translate_cli.main([*base, "--input", str(source), "--bpe", "subword_nmt"])
    with pytest.raises(TranslationInputError, match=r"BPE codes .*gone\.codes \(bpe_codes=\)"):
        load(demo, multimodal, bpe="subword_nmt", bpe_codes=str(tmp_path / "gone.codes"))
    source.write_text(f"{two[0]}\tmissing.jpg\n")
    with pytest.raises(TranslationInputError, match="in.en, line 1: no image at missing.jpg"):
        translate_cli.main([*base, "--input", str(source)])
    with pytest.raises(TranslationInputError, match="--tokenizer moses needs --source-lang and"):
        translate_cli.main([*base, "--input", str(source), "--tokenizer", "moses"])
    source.write_text(f"{two[0]}\n\n")
    with pytest.raises(TranslationInputError, match="in.en, line 2: the caption is empty"):
        translate_cli.main([*base, "--input", str(source), "--features", str(wrong_rows)])


def test_a_caption_longer_than_the_model_takes_is_named_or_truncated(
    demo, multimodal, tmp_path, capsys, caplog
):
    two = captions(demo)[:2]
    long = " ".join([two[1]] * 200)  # well over the task's 1024 source positions
    source = tmp_path / "in.en"
    source.write_text(f"{two[0]}\n{long}\n")
    rows = tmp_path / "rows.npy"
    np.save(rows, demo_features(demo)[:2])
    base = [str(demo / "bin"), "--path", str(multimodal / "checkpoint_last.pt"), "--cpu"]
    base += ["--input", str(source), "--features", str(rows)]
    with pytest.raises(TranslationInputError, match=r"in\.en, line 2 has \d+ tokens") as error:
        translate_cli.main(base)
    assert "more than the model takes (1024)" in str(error.value)
    assert "--truncate-source" in str(error.value)
    assert translate_cli.main([*base, "--truncate-source"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert "in.en, line 2 has" in caplog.text and "first 1023 tokens are translated" in caplog.text
    translator = load(demo, multimodal)
    with pytest.raises(TranslationInputError, match="caption 2 has"):
        translator.translate([two[0], long], features=demo_features(demo)[:2])


def test_a_data_directory_with_other_dictionaries_is_refused(demo, multimodal, tmp_path):
    """Same size, another order (a re-run of fairseq-preprocess on other data): word salad
    before, now refused naming the file."""
    data = tmp_path / "bin"
    shutil.copytree(demo / "bin", data)
    lines = (data / "dict.de.txt").read_text().splitlines()
    (data / "dict.de.txt").write_text("\n".join([lines[5], *lines[:5], *lines[6:]]) + "\n")
    with pytest.raises(ValueError, match="trained with other dictionaries") as error:
        MultimodalTranslator.from_pretrained(multimodal, "checkpoint_last.pt", str(data), cpu=True)
    assert f"{data / 'dict.de.txt'} (target)" in str(error.value)


# ---------------------------------------------------------------- a model directory with BPE


def raw_caption(tokens: str, detokenizer) -> str:
    """The demo's tokenized lowercased caption as a person would type it."""
    text = detokenizer.detokenize(tokens.split())
    return text[0].upper() + text[1:]


@pytest.fixture(scope="module")
def bpe_model(demo, tmp_path_factory) -> dict:
    """A model trained on Moses-tokenized, BPE-segmented text, whose directory holds its
    dictionaries, preprocessing.json and BPE codes (text_pipeline copy), and raw test captions."""
    import io

    from sacremoses import MosesDetokenizer
    from subword_nmt.learn_bpe import learn_bpe

    root = tmp_path_factory.mktemp("bpe")
    train_text = (demo / "raw" / "train.en").read_text() + (demo / "raw" / "train.de").read_text()
    (root / "data" / "bpe").mkdir(parents=True)
    with open(root / "data" / "bpe" / "codes", "w") as codes:
        learn_bpe(io.StringIO(train_text), codes, 40)
    steps = dict(lowercase=True, tokenizer="moses", bpe_codes="bpe/codes")
    bpe = text_pipeline.load_bpe(root / "data" / "bpe" / "codes")
    for side in ("en", "de"):
        for split in ("train", "valid", "test"):
            lines = (demo / "raw" / f"{split}.{side}").read_text().splitlines()
            segmented = [bpe.encode(line) for line in lines]
            (root / f"{split}.{side}").write_text("\n".join(segmented) + "\n")
    preprocess(root, root / "data")
    TextPipeline("en", "de", **steps).save(root / "data")
    model = trained_model(demo, root / "model", str(root / "data"))
    assert text_pipeline.main(["copy", str(root / "data"), str(model)]) == 0
    detokenizer = MosesDetokenizer("en")
    raw = [raw_caption(line, detokenizer) for line in captions(demo)]
    return {"root": root, "model": model, "raw": raw}


def test_a_model_directory_translates_raw_captions_alone(demo, bpe_model):
    """from_pretrained(dir) with nothing else: Moses + BPE in, BPE removed and detokenized out,
    equal to fairseq-generate's --remove-bpe hypotheses before detokenization."""
    model = bpe_model["model"]
    assert sorted(p.name for p in model.iterdir() if not p.name.endswith((".pt", ".log"))) == [
        "bpe", "dict.de.txt", "dict.en.txt", "preprocessing.json"]  # fmt: skip
    data = str(bpe_model["root"] / "data")
    expected = reference(demo, model, data, "--remove-bpe", "--max-len-b", "20")
    translator = MultimodalTranslator.from_pretrained(
        model, "checkpoint_last.pt", batch_size=9, max_len_b=20
    )  # a short training: a few hypotheses would run to 200 tokens
    assert (
        translator.encode(bpe_model["raw"][0]).tolist()
        == translator.src_dict.encode_line(
            translator.apply_bpe(captions(demo)[0]), add_if_not_exist=False
        ).tolist()
    )  # the caption typed by hand becomes the binarized tokens
    with single_thread():
        hypos = translator.generate(
            [translator.encode(c) for c in bpe_model["raw"]], beam=5, features=demo_features(demo)
        )
        translations = translator.translate(bpe_model["raw"], features=demo_features(demo))
    before_detokenizing = [translator.remove_bpe(translator.string(h[0]["tokens"])) for h in hypos]
    assert before_detokenizing == expected
    assert translations == [translator.detokenize(text) for text in expected]
    assert any(t != e for t, e in zip(translations, expected, strict=True))  # "x ." -> "x."
    assert all("@@" not in t for t in translations)
    assert translations == moses_detokenized(expected)


def moses_detokenized(lines: list[str]) -> list[str]:
    """sacremoses' German detokenization, as the translator did it before fairseq's did."""
    from sacremoses import MosesDetokenizer

    detokenizer = MosesDetokenizer("de")
    return [detokenizer.detokenize(line.split()) for line in lines]


def test_the_translator_tokenizes_as_the_training_data_was(bpe_model):
    """preprocessing.json's Moses (fairseq's registry, moses_lowercase) gives what
    recipes.moses, which prepare-multi30k.sh runs, made of the same raw lines."""
    translator = MultimodalTranslator.from_pretrained(bpe_model["model"], "checkpoint_last.pt")
    assert translator.cfg.tokenizer._name == "moses_lowercase"
    assert translator.cfg.bpe._name == "subword_nmt"
    reference = moses.tokenizer("en", lowercase=True)
    tricky = ["A man's T-shirt, “old”…", "Zwei  Hunde – „alt“ & jung: 1,000 € (ca.)!"]
    for line in [*bpe_model["raw"], *tricky]:
        assert translator.tokenize(line) == reference(line)


def fairseq_layout(model: Path, directory: Path) -> Path:
    """The model directory as fairseq's from_pretrained knows it: checkpoint, dictionaries,
    bpecodes; no preprocessing.json."""
    directory.mkdir()
    shutil.copyfile(model / "checkpoint_last.pt", directory / "checkpoint_last.pt")
    for name in ("dict.en.txt", "dict.de.txt"):
        shutil.copyfile(model / name, directory / name)
    shutil.copyfile(model / "bpe" / "codes", directory / "bpecodes")
    return directory


def test_a_tokenizer_takes_the_models_languages(demo, multimodal):
    """Not given, a tokenizer's languages are the model's (fairseq's would be "en" and "en")."""
    translator = load(demo, multimodal, tokenizer="moses")
    assert (translator.cfg.tokenizer.source_lang, translator.cfg.tokenizer.target_lang) == (
        "en", "de")  # fmt: skip
    assert translator.tokenizer.detok.lang == "de"
    assert translator.tokenize("A dog's ball.") == "A dog &apos;s ball ."


def test_a_fairseq_layout_translates_with_fairseqs_tokenizer_and_bpe(
    demo, bpe_model, tmp_path, capsys
):
    """fairseq-mmt-translate --tokenizer moses --bpe subword_nmt --bpe-codes FILE, and
    from_pretrained(tokenizer=, bpe=), as fairseq-interactive and fairseq's hub take them; the
    registered moses_lowercase reproduces preprocessing.json on the captions as typed."""
    model = fairseq_layout(bpe_model["model"], tmp_path / "fairseq-model")
    data = str(bpe_model["root"] / "data")
    expected = reference(demo, bpe_model["model"], data, "--remove-bpe", "--max-len-b", "20")
    typed = [caption[0].lower() + caption[1:] for caption in bpe_model["raw"]]  # moses keeps case
    features = demo_features(demo)
    with pytest.raises(TranslationInputError, match="give source_lang= and target_lang="):
        MultimodalTranslator.from_pretrained(model, "checkpoint_last.pt", tokenizer="moses")
    translator = MultimodalTranslator.from_pretrained(
        model, "checkpoint_last.pt", tokenizer="moses", bpe="subword_nmt", source_lang="en",
        target_lang="de", batch_size=9, max_len_b=20,
    )  # fmt: skip
    assert translator.cfg.bpe.bpe_codes == str(model / "bpecodes")  # found as fairseq finds it
    with single_thread():
        assert translator.translate(typed, features=features) == moses_detokenized(expected)
    source = tmp_path / "captions.en"
    base = [str(model), "--path", str(model / "checkpoint_last.pt"), "--input", str(source),
            "--features", str(demo / "features" / "test.npy"), "--source-lang", "en",
            "--target-lang", "de", "--bpe", "subword_nmt", "--bpe-codes", str(model / "bpecodes"),
            "--beam", "5", "--batch-size", "9", "--max-len-b", "20", "--cpu"]  # fmt: skip
    with single_thread():
        source.write_text("\n".join(typed) + "\n")
        assert translate_cli.main([*base, "--tokenizer", "moses"]) == 0
        assert capsys.readouterr().out.splitlines() == moses_detokenized(expected)
        source.write_text("\n".join(bpe_model["raw"]) + "\n")
        lowercasing = ["--tokenizer", "moses_lowercase", "--moses-no-dash-splits"]
        assert translate_cli.main([*base, *lowercasing]) == 0
        assert capsys.readouterr().out.splitlines() == moses_detokenized(expected)


def test_the_command_applies_preprocessing_json(demo, bpe_model, tmp_path, capsys):
    """A model directory with today's preprocessing.json and nothing else given: raw captions in,
    the Python interface's translations out."""
    model = bpe_model["model"]
    source = tmp_path / "captions.en"
    source.write_text("\n".join(bpe_model["raw"][:6]) + "\n")
    argv = [str(model), "--path", str(model / "checkpoint_last.pt"), "--input", str(source),
            "--features", str(tmp_path / "six.npy"), "--max-len-b", "20", "--cpu"]  # fmt: skip
    np.save(tmp_path / "six.npy", demo_features(demo)[:6])
    data = str(bpe_model["root"] / "data")
    expected = reference(demo, model, data, "--remove-bpe", "--max-len-b", "20")[:6]
    with single_thread():
        assert translate_cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == moses_detokenized(expected)


# ---------------------------------------------------------------- images through the extractor


def extract_with_the_script(images: Path, names: list[str], out: Path) -> None:
    spec = importlib.util.spec_from_file_location("extract_features", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out.parent.mkdir(parents=True, exist_ok=True)
    split = out.with_suffix(".txt")
    split.write_text("".join(f"{name}\n" for name in names))
    script.main(["--images", str(images), "--split-file", str(split), "--out", str(out),
                 "--random-weights", "--device", "cpu"])  # fmt: skip


@pytest.fixture(scope="module")
def image_model(demo, tmp_path_factory) -> dict:
    """A model trained on pool5 features that scripts/extract_features.py made (random weights)
    from three small generated images, on 6 demo sentences; and 3 test captions."""
    root = tmp_path_factory.mktemp("images")
    (root / "images").mkdir()
    for i, size in enumerate([(48, 32), (40, 40), (30, 50)]):
        pixels = np.random.RandomState(i).randint(0, 256, (*size[::-1], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
    (root / "raw").mkdir()
    for lang in ("en", "de"):
        (root / "raw" / f"valid.{lang}").write_text("a\n")  # --disable-validation: unused
    for split, count in (("train", 6), ("test", 3)):
        for lang in ("en", "de"):
            lines = (demo / "raw" / f"{split}.{lang}").read_text().splitlines()[:count]
            (root / "raw" / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    names = {
        split: [f"{i % 3}.png" for i in range(count)]
        for split, count in (("train", 6), ("test", 3))
    }
    with single_thread():
        for split, listed in names.items():
            extract_with_the_script(root / "images", listed, root / "features" / f"{split}.npy")
        preprocess(root / "raw", root / "bin")
        train(
            str(root / "bin"), *task_flags(root), "--arch", "cgru_mmt_small", "--optimizer", "adam",
            "--batch-size", "4", "--max-epoch", "1", "--save-dir", str(root / "model"),
            "--disable-validation", "--seed", "1",
        )  # fmt: skip
    paths = [root / "images" / name for name in names["test"]]
    return {"root": root, "model": root / "model", "paths": paths}


def test_images_translate_as_their_extracted_features(image_model, tmp_path, capsys):
    root = image_model["root"]
    translator = MultimodalTranslator.from_pretrained(
        image_model["model"], "checkpoint_last.pt", str(root / "bin"), cpu=True, max_len_b=12
    )  # a model of one epoch: short outputs keep the test fast
    assert translator.task.state.visual_feature_extractor["layer"] == "pool5"  # recorded
    test = (root / "raw" / "test.en").read_text().splitlines()
    with single_thread():
        extracted = translator.extract(image_model["paths"])
        by_features = translator.translate(test, features=np.load(root / "features" / "test.npy"))
        pil = [Image.open(path) for path in image_model["paths"]]
        by_images = translator.translate(test, images=pil)
        source = tmp_path / "input.tsv"
        source.write_text(
            "".join(f"{c}\t{p}\n" for c, p in zip(test, image_model["paths"], strict=True))
        )
        argv = [str(root / "bin"), "--path", str(image_model["model"] / "checkpoint_last.pt"),
                "--input", str(source), "--cpu", "--max-len-b", "12"]  # fmt: skip
        assert translate_cli.main(argv) == 0
    np.testing.assert_array_equal(extracted, np.load(root / "features" / "test.npy"))
    assert by_images == by_features
    assert capsys.readouterr().out.splitlines() == by_features


def test_contrastive_scores_images_as_their_extracted_features(image_model, tmp_path):
    """fairseq-mmt-evaluate contrastive with --images and --image-order (CoMMuTE's route) scores
    each line as with the features that scripts/extract_features.py made of those images."""
    from fairseq_mmt_adv.evaluation import cli as evaluate_cli

    root = image_model["root"]
    german = (root / "raw" / "test.de").read_text().splitlines()
    files = {"source": root / "raw" / "test.en", "correct": root / "raw" / "test.de"}
    files["incorrect"] = tmp_path / "incorrect.de"
    files["incorrect"].write_text("\n".join(german[1:] + german[:1]) + "\n")
    order = tmp_path / "img.order"
    order.write_text("".join(f"{path.name}\n" for path in image_model["paths"]))
    base = ["contrastive", str(root / "bin"), "--cpu"]
    base += ["--path", str(image_model["model"] / "checkpoint_last.pt")]
    base += [item for key, path in files.items() for item in (f"--{key}", str(path))]
    found = {}
    for route, flags in {
        "images": ["--images", str(root / "images"), "--image-order", str(order)],
        "features": ["--features", str(root / "features" / "test.npy")],
    }.items():
        with single_thread():
            assert evaluate_cli.main([*base, *flags, "--json", str(tmp_path / route)]) == 0
        found[route] = json.loads((tmp_path / route).read_text())
    assert found["images"]["items"] == 3
    assert found["images"]["lines"] == found["features"]["lines"]


def test_images_are_refused_from_other_weights_or_unreadable(image_model, tmp_path):
    root = image_model["root"]
    other = imf.build_resnet50()
    imf.randomize_(other, seed=7)
    weights = tmp_path / "other.pth"
    torch.save(other.state_dict(), weights)
    translator = MultimodalTranslator.from_pretrained(
        image_model["model"], "checkpoint_last.pt", str(root / "bin"), str(weights), cpu=True
    )
    with pytest.raises(TranslationInputError, match=r"random .* but .*other\.pth has sha256"):
        translator.translate(["a dog"], images=image_model["paths"][:1])
    translator.extractor_weights = None
    (tmp_path / "broken.jpg").write_bytes(b"no image")
    with pytest.raises(TranslationInputError, match=r"image 2 \(.*broken\.jpg\): cannot read"):
        translator.translate(["a", "b"], images=[image_model["paths"][0], tmp_path / "broken.jpg"])
    with pytest.raises(TranslationInputError, match="1 images for 2 captions"):
        translator.translate(["a", "b"], images=[image_model["paths"][0]])


@pytest.mark.cuda
def test_translation_on_cuda_equals_the_cpu(demo, multimodal):
    translator = load(demo, multimodal, batch_size=7)
    cpu = translator.translate(captions(demo), features=demo_features(demo))
    translator.cuda()
    assert translator.device.type == "cuda"
    assert translator.translate(captions(demo), features=demo_features(demo)) == cpu


def test_the_demo_ends_with_three_translations_through_the_python_interface(
    demo, multimodal, tmp_path, capsys
):
    """fairseq_mmt_adv.recipes.demo_translation, which scripts/run_demo.py calls last."""
    from fairseq_mmt_adv.recipes import demo_translation

    ambig = (demo / "raw" / "test.ambig").read_text().splitlines()
    rows = demo_translation.pick_examples(ambig)
    senses = [ambig[row].split("\t") for row in rows]
    assert len(rows) == 3 and senses[0][0] == senses[1][0] and senses[0][1] != senses[1][1]
    assert senses[2][0] != senses[0][0]  # one noun in two scenes, then another noun
    (tmp_path / "ctx-mul").symlink_to(multimodal)  # the layout of scripts/run_demo.py --out
    (tmp_path / "corpus").symlink_to(demo)
    with single_thread():
        assert demo_translation.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    best = MultimodalTranslator.from_pretrained(multimodal, "checkpoint_best.pt", str(demo / "bin"))
    features = demo_features(demo)[rows]
    with single_thread():
        translations = best.translate([captions(demo)[row] for row in rows], features=features)
    assert "3 test captions translated by ctx-mul through the Python interface" in printed
    for row, translation in zip(rows, translations, strict=True):
        assert f"  {captions(demo)[row]}   [image: {ambig[row].split(chr(9))[2]}]" in printed
        assert f"    -> {translation}   (reference: " in printed
