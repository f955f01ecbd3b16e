"""The data directory's preprocessing record, read as fairseq's tokenizer and BPE, applied to
new text and undone on the output; the tokenizers that fairseq lacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.recipes import moses
from fairseq_mmt_adv.translation.text_pipeline import PREPROCESSING_FILE, TextPipeline, main

TRICKY = [
    "A man's bike, “old”.",
    "  Two  t-shirts\tand a 3-year-old's toy…  ",
    "Ein Mann – „alt“ & jung: 1,000 € (ca.)!",
    "L'homme « vieux »  à l'école ?",
    "Hello <b>world</b> | [x] {y}",
]


def test_without_steps_text_passes_as_it_is(tmp_path):
    """No preprocessing.json: fairseq's defaults (no tokenizer, no BPE: the dictionary splits
    the text on whitespace). A record of no steps: whitespace only."""
    assert TextPipeline.load(tmp_path) is None
    TextPipeline("en", "de").save(tmp_path)
    tokenizer, bpe = TextPipeline.load(tmp_path).build()
    text = "A  man rides,  a Bike."
    assert tokenizer.encode(text) == "A man rides, a Bike."  # whitespace only
    assert bpe is None
    assert tokenizer.decode("x , y") == "x , y"


def test_multi30k_steps_match_the_official_tokenized_files(tmp_path):
    """The official lc.norm.tok files: lowercase, Moses punctuation and tokens, escaped."""
    import io

    from subword_nmt.learn_bpe import learn_bpe

    with open(tmp_path / "codes", "w") as codes:
        learn_bpe(io.StringIO("a bike , a bike .\n" * 5), codes, 6)
    pipeline = TextPipeline("en", "de", True, "moses", "codes")
    pipeline.save(tmp_path)
    loaded = TextPipeline.load(tmp_path)
    assert loaded.lowercase and loaded.bpe_codes == "codes"
    assert loaded.fairseq_options() == {
        "source_lang": "en", "target_lang": "de", "tokenizer": "moses_lowercase",
        "moses_no_dash_splits": True, "moses_keep_case": False, "bpe": "subword_nmt",
        "bpe_codes": str(tmp_path / "codes"),
    }  # fmt: skip
    tokenizer, bpe = loaded.build()  # fairseq's registries build them
    tokens = tokenizer.encode("A man's bike, “old”.")
    assert tokens == "a man &apos;s bike , &quot; old . &quot;"  # Moses moves the stop in
    segmented = bpe.encode("a bike bikers")
    assert segmented.startswith("a bike ") and "@@ " in segmented  # an unseen word is split
    assert bpe.decode(segmented) == "a bike bikers"
    assert tokenizer.decode("ein &quot; alter &quot; mann , hier .") == 'ein "alter" mann, hier.'


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("lang", ["en", "de", "fr"])
def test_the_tokenizer_is_that_of_the_training_data(tmp_path, lang, lowercase):
    """recipes.moses tokenized the training text (prepare-multi30k.sh); the tokenizer that
    preprocessing.json becomes gives the same tokens, dashes, quotes and case included."""
    tokenizer, _ = TextPipeline(lang, "en", lowercase, "moses").build()
    reference = moses.tokenizer(lang, lowercase)
    assert [tokenizer.encode(line) for line in TRICKY] == [reference(line) for line in TRICKY]
    assert "t-shirts" in tokenizer.encode(TRICKY[1])  # not fairseq's "t @-@ shirts"
    assert any(line != line.lower() for line in map(tokenizer.encode, TRICKY)) != lowercase


def test_lowercasing_without_moses(tmp_path):
    tokenizer, _ = TextPipeline("en", "de", lowercase=True).build()
    assert tokenizer.encode("A  Man\tRides.") == "a man rides."
    assert tokenizer.decode("ein Mann .") == "ein Mann ."


def test_a_broken_file_or_missing_codes_are_named(tmp_path):
    (tmp_path / PREPROCESSING_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read {tmp_path / PREPROCESSING_FILE}"):
        TextPipeline.load(tmp_path)
    TextPipeline(bpe_codes="gone.codes").save(tmp_path)
    with pytest.raises(FileNotFoundError, match="gone.codes, which are missing"):
        TextPipeline.load(tmp_path).fairseq_options()


def test_importing_it_registers_the_plugin():
    code = f"import fairseq_mmt_adv.translation.text_pipeline; {REGISTERED}"
    subprocess.run([sys.executable, "-c", code], check=True)


TOKENIZERS_REGISTERED = (
    "from fairseq.data.encoders import TOKENIZER_REGISTRY as T; "
    "assert {'moses_lowercase', 'lowercase'} <= set(T), 'the tokenizers are not registered'"
)


def test_the_lowercasing_tokenizers_register_with_fairseq():
    """In fairseq's registry, as --tokenizer choices with their options."""
    code = f"import fairseq_mmt_adv.translation; {TOKENIZERS_REGISTERED}"
    subprocess.run([sys.executable, "-c", code], check=True)
    from fairseq import options
    from fairseq.data import encoders

    parser = options.get_interactive_generation_parser(default_task="multimodal_translation")
    argv = [".", "--tokenizer", "moses_lowercase", "--moses-keep-case", "--source-lang", "de"]
    args = options.parse_args_and_arch(parser, argv)
    assert args.moses_keep_case and not args.moses_no_dash_splits  # fairseq's moses options too
    assert encoders.build_tokenizer(args).encode("Ein T-Shirt") == "Ein T @-@ Shirt"
    args.moses_keep_case = False
    assert encoders.build_tokenizer(args).encode("Ein T-Shirt") == "ein t @-@ shirt"


REPO = Path(__file__).resolve().parents[1]


def data_directory(root: Path) -> Path:
    """A prepared data directory as prepare-multi30k.sh leaves it (the parts translation needs)."""
    data = root / "data"
    (data / "bpe").mkdir(parents=True)
    for lang in ("en", "de", "fr"):
        (data / f"dict.{lang}.txt").write_text(f"{lang} 1\n")
    (data / "bpe" / "codes").write_text("#version: 0.2\na b\n")
    (data / "train.npy").write_bytes(b"")
    argv = ["write", str(data), "--source-lang", "en", "--target-lang", "de", "--lowercase",
            "--tokenizer", "moses", "--bpe-codes", "bpe/codes"]  # fmt: skip
    assert main(argv) == 0
    return data


def copied(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_write_and_copy_commands(tmp_path, capsys):
    data = data_directory(tmp_path)
    assert TextPipeline.load(data) == TextPipeline(
        "en", "de", True, "moses", "bpe/codes", str(data)
    )
    assert main(["copy", str(data), str(tmp_path / "model")]) == 0
    assert copied(tmp_path / "model") == [
        "bpe/codes", "dict.de.txt", "dict.en.txt", PREPROCESSING_FILE]  # fmt: skip
    assert "copied" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--bpe-codes gone: no such file in"):
        main(
            [
                "write",
                str(data),
                "--source-lang",
                "en",
                "--target-lang",
                "de",
                "--bpe-codes",
                "gone",
            ]
        )
    TextPipeline("en", "de", bpe_codes="../codes").save(data)
    (tmp_path / "codes").write_text("")
    with pytest.raises(
        SystemExit, match=r"names BPE codes \.\./codes, which are not a file inside"
    ):
        main(["copy", str(data), str(tmp_path / "other")])


def test_train_sh_leaves_a_complete_model_directory(tmp_path):
    """examples/multi30k/train.sh copies them before training (here a stand-in fairseq-train)."""
    data = data_directory(tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "fairseq-train").write_text("#!/usr/bin/env bash\nexit 0\n")
    (fake_bin / "fairseq-train").chmod(0o755)
    save_dir = tmp_path / "run"
    result = subprocess.run(
        ["bash", str(REPO / "examples" / "multi30k" / "train.sh"), "--data", str(data),
         "--save-dir", str(save_dir)],
        capture_output=True, text=True, env={**os.environ, "FAIRSEQ_BIN": str(fake_bin)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = ["DONE", "bpe/codes", "command.sh", "dict.de.txt", "dict.en.txt", PREPROCESSING_FILE]
    assert copied(save_dir) == expected
