"""The data directory's preprocessing, applied to new text and undone on the output."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.translation.text_pipeline import PREPROCESSING_FILE, TextPipeline, main


def test_without_a_preprocessing_file_text_passes_as_it_is(tmp_path):
    pipeline = TextPipeline.load(tmp_path)
    text = "A  man rides,  a Bike."
    assert pipeline.tokenize(text) == "A man rides, a Bike."  # whitespace only
    assert pipeline.apply_bpe("a b") == "a b" and pipeline.remove_bpe("a@@ b") == "a@@ b"
    assert pipeline.detokenize("x , y") == "x , y"


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
    tokens = loaded.tokenize("A man's bike, “old”.")
    assert tokens == "a man &apos;s bike , &quot; old . &quot;"  # Moses moves the stop in
    segmented = loaded.apply_bpe("a bike bikers")
    assert segmented.startswith("a bike ") and "@@ " in segmented  # an unseen word is split
    assert loaded.remove_bpe(segmented) == "a bike bikers"
    assert loaded.detokenize("ein &quot; alter &quot; mann , hier .") == 'ein "alter" mann, hier.'


def test_a_broken_file_or_missing_codes_are_named(tmp_path):
    (tmp_path / PREPROCESSING_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read {tmp_path / PREPROCESSING_FILE}"):
        TextPipeline.load(tmp_path)
    TextPipeline(bpe_codes="gone.codes").save(tmp_path)
    with pytest.raises(FileNotFoundError, match="gone.codes, which are missing"):
        TextPipeline.load(tmp_path).apply_bpe("a")


def test_importing_it_registers_the_plugin():
    code = f"import fairseq_mmt_adv.translation.text_pipeline; {REGISTERED}"
    subprocess.run([sys.executable, "-c", code], check=True)


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
