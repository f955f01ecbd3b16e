"""scripts/prepare-multi30k.sh on a tiny fake copy of the multi30k-dataset repository."""

import gzip
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fairseq_mmt_adv.translation.text_pipeline import TextPipeline

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare-multi30k.sh"
SIZES = {
    "train": 60,
    "val": 13,
    "test_2016_flickr": 11,
    "test_2017_flickr": 11,
    "test_2017_mscoco": 11,
    "test_2018_flickr": 11,
}
CS_SPLITS = ("train", "val", "test_2016_flickr", "test_2018_flickr")
FAIRSEQ_NAMES = {
    "train": "train",
    "val": "valid",
    "test_2016_flickr": "test",
    "test_2017_flickr": "test1",
    "test_2017_mscoco": "test2",
    "test_2018_flickr": "test3",
}
WORDS = {
    "en": "a dog man woman child runs walks sits on the in green red street park water ball",
    "de": "ein hund mann frau kind läuft geht sitzt auf der im grünen roten straße park",
    "fr": "un chien homme femme enfant court marche assis sur la dans vert rouge rue parc",
    "cs": "pes muž žena dítě běží jde sedí na v zelené červené ulici parku vodě míč",
}
FEATURE_DIM = 8


def make_fake_multi30k(root: Path) -> None:
    """Write data/task1/{raw,tok,image_splits} with SIZES lines per split."""
    rng = random.Random(0)
    task1 = root / "data" / "task1"
    for sub in ("raw", "tok", "image_splits"):
        (task1 / sub).mkdir(parents=True)
    for split, n in SIZES.items():
        images = [f"{split}_{i}.jpg" for i in range(n)]
        (task1 / "image_splits" / f"{split}.txt").write_text("\n".join(images) + "\n")
        for lang, words in WORDS.items():
            if lang == "cs" and split not in CS_SPLITS:
                continue
            sentences = [rng.choices(words.split(), k=rng.randint(3, 9)) for _ in range(n)]
            raw = "".join(" ".join(s).capitalize() + ".\n" for s in sentences)
            tok = "".join(" ".join(s) + " .\n" for s in sentences)
            with gzip.open(task1 / "raw" / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write(raw)
            (task1 / "tok" / f"{split}.lc.norm.tok.{lang}").write_text(tok, encoding="utf-8")


def make_features(root: Path) -> Path:
    """Feature files named by Multi30K split; test_2017_mscoco is float64 (to be converted)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in SIZES.items():
        dtype = np.float64 if split == "test_2017_mscoco" else np.float32
        np.save(root / f"{split}.npy", rng.standard_normal((n, FEATURE_DIM)).astype(dtype))
    return root


def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = ["bash", str(SCRIPT), "--python", sys.executable, "--workers", "2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Modification time and content hash of every file (and link) under ``root``."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            result[str(path.relative_to(root))] = (stat.st_mtime_ns, digest)
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One en-de run with features: the dataset, the features, the output and the run."""
    root = tmp_path_factory.mktemp("prepare")
    make_fake_multi30k(root / "multi30k")
    features = make_features(root / "features")
    out = root / "out"
    start = time.monotonic()
    proc = run_script(
        "--multi30k", root / "multi30k", "--out", out, "--bpe-merges", "50", "--features", features
    )
    assert proc.returncode == 0, proc.stderr
    return {
        "root": root,
        "m30k": root / "multi30k",
        "features": features,
        "out": out,
        "proc": proc,
        "seconds": time.monotonic() - start,
    }


def test_help() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--bpe-merges" in proc.stdout and "--features" in proc.stdout


def test_binarized_files_for_every_split(prepared: dict) -> None:
    out = prepared["out"]
    for split in FAIRSEQ_NAMES.values():
        for lang in ("en", "de"):
            for ext in ("bin", "idx"):
                assert (out / f"{split}.en-de.{lang}.{ext}").is_file(), (split, lang, ext)
    assert (out / "dict.en.txt").is_file() and (out / "dict.de.txt").is_file()
    assert not (out / ".binarize.tmp").exists()


def test_text_kept_for_scoring(prepared: dict) -> None:
    out, task1 = prepared["out"], prepared["m30k"] / "data" / "task1"
    tok = (task1 / "tok" / "test_2017_mscoco.lc.norm.tok.de").read_text(encoding="utf-8")
    assert (out / "text" / "test2.de").read_text(encoding="utf-8") == tok
    with gzip.open(task1 / "raw" / "val.en.gz", "rt", encoding="utf-8") as f:
        assert (out / "text" / "valid.raw.en").read_text(encoding="utf-8") == f.read()
    bpe = (out / "text" / "train.bpe.de").read_text(encoding="utf-8").splitlines()
    assert len(bpe) == SIZES["train"]
    assert any("@@ " in line for line in bpe)
    assert [line.replace("@@ ", "") for line in bpe] == (out / "text" / "train.de").read_text(
        encoding="utf-8"
    ).splitlines()


def assert_translation_steps(out: Path, raw_gz: Path, split: str, codes: str) -> None:
    """OUT/preprocessing.json: its steps (the translator's) turn raw text into the BPE text that
    was binarized."""
    pipeline = TextPipeline.load(out)
    assert (pipeline.source_lang, pipeline.bpe_codes, pipeline.tokenizer) == ("en", codes, "moses")
    tokenizer, bpe = pipeline.build()  # fairseq's tokenizer and BPE, as the translator's
    with gzip.open(raw_gz, "rt", encoding="utf-8") as f:
        segmented = [bpe.encode(tokenizer.encode(line)) for line in f.read().splitlines()]
    assert segmented == (out / "text" / f"{split}.bpe.en").read_text(encoding="utf-8").splitlines()


def test_preprocessing_recorded_for_translation(prepared: dict) -> None:
    raw = prepared["m30k"] / "data" / "task1" / "raw" / "test_2016_flickr.en.gz"
    assert_translation_steps(prepared["out"], raw, "test", "bpe/codes")
    assert TextPipeline.load(prepared["out"]).lowercase  # the official files are lowercased


def test_splits_tsv(prepared: dict) -> None:
    rows = [line.split("\t") for line in (prepared["out"] / "splits.tsv").read_text().splitlines()]
    assert rows[0] == ["split", "multi30k", "sentences"]
    assert rows[1:] == [[FAIRSEQ_NAMES[m], m, str(n)] for m, n in SIZES.items()]


def test_vocab_sizes(prepared: dict) -> None:
    out = prepared["out"]
    text = (out / "vocab_sizes.txt").read_text()
    rows = [line.split("\t") for line in text.splitlines() if not line.startswith("#")]
    assert rows[0][:3] == ["side", "lang", "dict_lines"]
    for (side, lang, lines, types, padding, length, paper), want in zip(
        rows[1:], (("source", "en", "5204"), ("target", "de", "7067")), strict=True
    ):
        assert (side, lang, paper) == want
        dict_lines = (out / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert int(lines) == len(dict_lines)
        assert int(types) + int(padding) == int(lines)
        assert int(length) == int(lines) + 4 and int(length) % 8 == 0
    assert "<s> <pad> </s> <unk>" in text
    assert "# source (en): the paper's 5204 is not" in text  # 50 merges: other BPE types
    assert text in prepared["proc"].stdout


def test_features_linked_by_fairseq_names(prepared: dict) -> None:
    out, features = prepared["out"], prepared["features"]
    for m30k, fairseq in FAIRSEQ_NAMES.items():
        linked = out / f"{fairseq}.npy"
        expected = np.load(features / f"{m30k}.npy")
        if m30k == "test_2017_mscoco":
            assert not linked.is_symlink()
            assert np.load(linked).dtype == np.float32
        else:
            assert linked.is_symlink()
            assert os.readlink(linked) == str(features / f"{m30k}.npy")
        np.testing.assert_allclose(np.load(linked), expected, rtol=1e-6)


def test_progress_one_line_per_step(prepared: dict) -> None:
    steps = [line for line in prepared["proc"].stdout.splitlines() if "/7] " in line]
    assert [line.split("] ")[1].split("/")[0].lstrip("[") for line in steps] == list("1234567")


def test_second_run_is_fast_and_changes_nothing(prepared: dict) -> None:
    out = prepared["out"]
    before = snapshot(out)
    start = time.monotonic()
    proc = run_script(
        "--multi30k",
        prepared["m30k"],
        "--out",
        out,
        "--bpe-merges",
        "50",
        "--features",
        prepared["features"],
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done before, skipped") == 7
    assert snapshot(out) == before
    # every step skipped: faster than the run that did them (each Python step imports the
    # plugin, so no absolute bound holds on a busy machine)
    assert seconds < prepared["seconds"]


def test_other_settings_into_same_out_refused(prepared: dict) -> None:
    proc = run_script(
        "--multi30k", prepared["m30k"], "--out", prepared["out"], "--bpe-merges", "40"
    )
    assert proc.returncode != 0
    assert "other settings" in proc.stderr and "bpe_merges=50" in proc.stderr


@pytest.mark.parametrize(
    "damaged", ["tok/val.lc.norm.tok.de", "raw/test_2017_flickr.de.gz", "image_splits/train.txt"]
)
def test_truncated_input_fails_naming_the_file(
    prepared: dict, tmp_path: Path, damaged: str
) -> None:
    m30k = tmp_path / "multi30k"
    shutil.copytree(prepared["m30k"], m30k)
    path = m30k / "data" / "task1" / damaged
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.readlines()
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(lines[:-1])
    else:
        path.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[:-1]))
    proc = run_script("--multi30k", m30k, "--out", tmp_path / "out", "--bpe-merges", "50")
    assert proc.returncode != 0
    assert "truncated input" in proc.stderr
    assert str(path) in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_input_fails_naming_the_file(prepared: dict, tmp_path: Path) -> None:
    m30k = tmp_path / "multi30k"
    shutil.copytree(prepared["m30k"], m30k)
    missing = m30k / "data" / "task1" / "tok" / "test_2018_flickr.lc.norm.tok.en"
    missing.unlink()
    proc = run_script("--multi30k", m30k, "--out", tmp_path / "out", "--bpe-merges", "50")
    assert proc.returncode != 0
    assert f"missing input {missing}" in proc.stderr
    assert not (tmp_path / "out").exists()  # the inputs are checked before OUT is made


def test_bad_multi30k_leaves_no_out_directory(tmp_path: Path) -> None:
    not_a_copy = tmp_path / "not-multi30k"
    not_a_copy.mkdir()
    out = tmp_path / "data-bin" / "en-de"
    proc = run_script("--multi30k", not_a_copy, "--out", out)
    assert proc.returncode != 0
    assert f"{not_a_copy}/data/task1 does not exist" in proc.stderr
    assert not (tmp_path / "data-bin").exists()


def link_features_again(prepared: dict, tmp_path: Path, features: Path):
    """A copy of the prepared output without its feature links, prepared again with
    ``--features``; the copy and the script's result."""
    out = tmp_path / "out"
    shutil.copytree(prepared["out"], out, symlinks=True)
    for stale in out.glob("*.npy"):
        stale.unlink()
    proc = run_script(
        "--multi30k", prepared["m30k"], "--out", out, "--bpe-merges", "50", "--features", features
    )
    return out, proc


def test_missing_feature_file_fails_clearly(prepared: dict, tmp_path: Path) -> None:
    features = tmp_path / "features"
    shutil.copytree(prepared["features"], features)
    (features / "test_2018_flickr.npy").unlink()
    out, proc = link_features_again(prepared, tmp_path, features)
    assert proc.returncode != 0
    assert f"missing feature file {features / 'test_2018_flickr.npy'}" in proc.stderr
    assert "fairseq split test3" in proc.stderr
    assert not list(out.glob("*.npy"))


def test_moses_tokenization_separate_bpe_en_cs(prepared: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_script(
        "--multi30k",
        prepared["m30k"],
        "--out",
        out,
        "--pair",
        "en-cs",
        "--bpe-merges",
        "50",
        "--tokenization",
        "moses",
        "--lowercase",
        "--separate-bpe",
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "bpe" / "codes.en").is_file() and (out / "bpe" / "codes.cs").is_file()
    for split in ("train", "valid", "test", "test1"):
        assert (out / f"{split}.en-cs.cs.bin").is_file()
    assert not (out / "test2.en-cs.cs.bin").exists()
    tok = prepared["m30k"] / "data" / "task1" / "tok" / "test_2018_flickr.lc.norm.tok.cs"
    assert (out / "text" / "test1.cs").read_text(encoding="utf-8") == tok.read_text(
        encoding="utf-8"
    )
    rows = (out / "splits.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[1] for row in rows] == list(CS_SPLITS)
    assert "n/a" in (out / "vocab_sizes.txt").read_text()
    raw = prepared["m30k"] / "data" / "task1" / "raw" / "test_2018_flickr.en.gz"
    assert_translation_steps(out, raw, "test1", "bpe/codes.en")


def test_finds_the_repositorys_environment_without_python_or_path(
    prepared: dict, tmp_path: Path
) -> None:
    """A new user's call: no --python, the environment not activated (not on PATH): the
    script takes the tools of the repository's .venv (here a copy of the repository whose
    .venv/bin holds this environment's tools)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / SCRIPT.name)
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv_bin / "python").chmod(0o755)
    for tool in ("subword-nmt", "fairseq-preprocess"):
        (venv_bin / tool).symlink_to(Path(sys.executable).parent / tool)
    out = tmp_path / "out"
    shutil.copytree(prepared["out"], out, symlinks=True)
    path = ":".join(p for p in ("/usr/bin", "/bin") if Path(p).is_dir())
    assert not any((Path(p) / "subword-nmt").exists() for p in path.split(":"))
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / SCRIPT.name), "--multi30k", prepared["m30k"], "--out"]
        + [str(out), "--bpe-merges", "50"],
        capture_output=True,
        text=True,
        env={"PATH": path, "HOME": str(tmp_path)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    tools = f"tools: {venv_bin}/python, {venv_bin}/subword-nmt, {venv_bin}/fairseq-preprocess"
    assert tools in proc.stdout
    assert proc.stdout.count("done before, skipped") == 6  # and no --features


def test_bad_feature_file_fails_by_the_tasks_rules(prepared: dict, tmp_path: Path) -> None:
    """A feature file the task would refuse is refused here, naming it; nothing is linked."""
    features = tmp_path / "features"
    shutil.copytree(prepared["features"], features)
    bad = features / "test_2017_flickr.npy"
    values = np.load(bad)
    values[3, 2] = np.nan
    np.save(bad, values)
    out, proc = link_features_again(prepared, tmp_path, features)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"prepare-multi30k: error: visual feature file {bad}: row 3")
    assert not list(out.glob("*.npy*"))


DEVICE_CHECK = SCRIPT.parent / "device-check.sh"


def run_device_check(
    *args: str | Path, bin_first: Path | None = None
) -> subprocess.CompletedProcess:
    """scripts/device-check.sh with this Python's environment first on PATH (after
    ``bin_first``, when given)."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PATH": f"{bin_first}:{path}" if bin_first else path}
    env.update(ARCH="cgru_mmt_small", OMP_NUM_THREADS="1")
    cmd = ["bash", str(DEVICE_CHECK), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_device_check_rehearses_on_the_cpu(prepared: dict, tmp_path: Path) -> None:
    """The GPU checks' script, on the CPU and tiny data: tests, one epoch, beam-12 decoding."""
    out, work = tmp_path / "check", tmp_path / "work"
    proc = run_device_check(
        "--device",
        "cpu",
        "--data",
        prepared["out"],
        "--out",
        out,
        "--work",
        work,
        "--phases",
        "tests,train,decode",
        "--",
        "--max-epoch",
        "1",
        "--num-workers",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    assert "tests: passed" in summary and "skipped" in summary  # no CUDA here
    assert "train: " in summary and " 1 epochs" in summary
    assert f"Translated {SIZES['test_2016_flickr']} sentences" in summary
    assert "BLEU4" in summary and (work / "baseline-nov" / "checkpoint_best.pt").is_file()
    # the logs stay few and small (a device call brings back at most 8 files)
    assert sorted(p.name for p in out.iterdir()) == [
        "decode-test.log",
        "summary.txt",
        "tests.log",
        "train.log",
    ]
    features = np.load(work / "features" / "train.npy", mmap_mode="r")
    assert features.shape == (SIZES["train"], 2048) and features.dtype == np.float16


def test_device_check_rejects_bad_input(prepared: dict, tmp_path: Path) -> None:
    proc = run_device_check("--data", tmp_path)
    assert proc.returncode == 2 and "splits.tsv is missing" in proc.stderr
    proc = run_device_check("--data", prepared["out"], "--phases", "train,fly")
    assert proc.returncode == 2 and "unknown phase fly" in proc.stderr
    proc = run_device_check("--data", prepared["out"], "--device", "tpu")
    assert proc.returncode == 2 and "--device must be cuda or cpu" in proc.stderr
    proc = run_device_check("--help")
    assert proc.returncode == 0 and "--phases" in proc.stdout


def test_device_check_stops_with_the_failing_logs_tail(prepared: dict, tmp_path: Path) -> None:
    """A failing step stops the script with its log's tail and the log's name. The failing
    command is a stand-in fairseq-generate first on PATH: a real one would spend seconds on
    its start before it failed, and the script treats every step alike."""
    work, bin_first = tmp_path / "work", tmp_path / "bin"
    (work / "baseline-nov").mkdir(parents=True)
    (work / "baseline-nov" / "checkpoint_best.pt").write_bytes(b"")
    bin_first.mkdir()
    stand_in = bin_first / "fairseq-generate"
    stand_in.write_text("#!/bin/sh\necho 'no model in checkpoint_best.pt (stand-in)' >&2\nexit 1\n")
    stand_in.chmod(0o755)
    args = ("--device", "cpu", "--data", prepared["out"], "--out", tmp_path / "check")
    proc = run_device_check(*args, "--work", work, "--phases", "decode", bin_first=bin_first)
    assert proc.returncode == 2
    assert "failed, see" in proc.stderr and "decode-test.log" in proc.stderr
    assert "no model in checkpoint_best.pt (stand-in)" in proc.stderr  # the log's tail
    # without a checkpoint, the decode phase alone stops before it starts anything
    out = tmp_path / "check-again"
    args = ("--device", "cpu", "--data", prepared["out"], "--out", out, "--work", tmp_path / "none")
    proc = run_device_check(*args, "--phases", "decode")
    assert proc.returncode == 2 and "add train to --phases" in proc.stderr
    assert not (out / "summary.txt").exists()
