"""fairseq_mmt_adv.recipes.features and .moses: feature files checked by the task's rules and
linked; Moses tokenization of gzip-compressed raw text."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.data.feature_files import VisualFeatureError
from fairseq_mmt_adv.recipes import features, moses

REPO = Path(__file__).resolve().parents[1]
ROWS = {"train": 6, "valid": 3, "test": 4}


def write_features(root: Path, dtypes: dict | None = None, dim: int = 5) -> list[tuple]:
    """One file per split in ``root/src`` and the (source, target, rows) jobs into ``root``."""
    (root / "src").mkdir(exist_ok=True)
    jobs = []
    for split, rows in ROWS.items():
        dtype = (dtypes or {}).get(split, np.float32)
        values = np.arange(rows * dim, dtype=np.float64).reshape(rows, dim) / 7
        np.save(root / "src" / f"{split}.npy", values.astype(dtype))
        jobs.append((root / "src" / f"{split}.npy", root / f"{split}.npy", rows))
    return jobs


def test_link_features_links_float32_and_converts_float64(tmp_path: Path) -> None:
    jobs = write_features(tmp_path, {"valid": np.float64, "test": np.float16})
    features.link_features(jobs)
    for source, target, _ in jobs:
        expected = np.load(source)
        if expected.dtype == np.float64:
            assert not target.is_symlink() and np.load(target).dtype == np.float32
        else:
            assert os.readlink(target) == str(source)
        np.testing.assert_allclose(np.load(target), expected, rtol=1e-3)
    assert sorted(p.name for p in tmp_path.glob("*.npy*")) == ["test.npy", "train.npy", "valid.npy"]


def damage_nan(path: Path) -> None:
    values = np.load(path)
    values[2, 1] = np.nan
    np.save(path, values)


def damage_dim(path: Path) -> None:
    np.save(path, np.zeros((ROWS["test"], 4), np.float32))


def damage_rows(path: Path) -> None:
    np.save(path, np.zeros((ROWS["test"] + 1, 5), np.float32))


def damage_dtype(path: Path) -> None:
    np.save(path, np.zeros((ROWS["test"], 5), np.int32))


def damage_bytes(path: Path) -> None:
    path.write_bytes(b"not an npy file")


@pytest.mark.parametrize(
    "damage, message",
    [
        (damage_nan, "row 2 (sentence 2) holds NaN or inf"),
        (damage_dim, "pooled (D=4) features but the model was trained on pooled (D=5) ones"),
        (damage_rows, "has 5 rows but the split has 4 sentences"),
        (damage_dtype, "has dtype int32; expected float16 or float32"),
        (damage_bytes, "cannot read visual feature file"),
    ],
)
def test_link_features_refuses_what_the_task_refuses(tmp_path: Path, damage, message) -> None:
    jobs = write_features(tmp_path, {"test": np.float64} if damage is damage_nan else None)
    damage(jobs[2][0])
    with pytest.raises(VisualFeatureError) as error:
        features.link_features(jobs)
    assert f"visual feature file {jobs[2][0]}" in str(error.value)  # float64: its source
    assert message in str(error.value)
    assert not list(tmp_path.glob("*.npy*"))  # nothing linked, no partial file left


def test_the_link_command_names_the_calling_script(tmp_path: Path) -> None:
    jobs = write_features(tmp_path)
    damage_rows(jobs[2][0])
    argv = [str(item) for job in jobs for item in job]
    command = [sys.executable, "-m", "fairseq_mmt_adv.recipes.features", "--prog", "prep"]
    done = subprocess.run([*command, "link", *argv], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert done.stderr.startswith(f"prep: error: visual feature file {jobs[2][0]} has 5 rows")


def test_linking_checks_the_files(tmp_path: Path) -> None:
    # the checks are numpy's (fairseq_mmt_adv.data.feature_files)
    argv = [str(item) for job in write_features(tmp_path) for item in job]
    code = (
        "import sys; from fairseq_mmt_adv.recipes import features; "
        "assert features.main(['link', *sys.argv[1:]]) == 0; "
        f"{REGISTERED}"
    )
    subprocess.run([sys.executable, "-c", code, *argv], check=True, cwd=REPO)
    assert os.readlink(tmp_path / "train.npy") == str(tmp_path / "src" / "train.npy")


def test_random_features_follow_the_split_table(tmp_path: Path) -> None:
    table = tmp_path / "splits.tsv"
    table.write_text("split\tmulti30k\tsentences\ntrain\ttrain\t7\ntest1\ttest_2017_flickr\t3\n")
    written = features.random_features(table, tmp_path / "f", dim=16)
    assert [p.name for p in written] == ["train.npy", "test1.npy"]
    train = np.load(tmp_path / "f" / "train.npy")
    assert train.shape == (7, 16) and train.dtype == np.float16 and train.std() > 0.5
    assert np.load(tmp_path / "f" / "test1.npy").shape == (3, 16)


def gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(text)
    return path


def test_moses_tokenizes_escapes_and_lowercases(tmp_path: Path) -> None:
    source = gz(tmp_path / "a.en.gz", "A Dog's ball & \u201cthe\u201d park.\nTwo men, one bike!\n")
    moses.tokenize_files([(source, tmp_path / "a.en", "en")], lowercase=True, workers=2)
    assert (tmp_path / "a.en").read_text().splitlines() == [
        "a dog &apos;s ball &amp; &quot; the &quot; park .",
        "two men , one bike !",
    ]
    moses.tokenize_files([(source, tmp_path / "b.en", "en")], lowercase=False, workers=1)
    assert (tmp_path / "b.en").read_text().startswith("A Dog &apos;s")
    assert not list(tmp_path.glob("*.tmp"))


def test_moses_names_a_damaged_file(tmp_path: Path) -> None:
    damaged = tmp_path / "d.de.gz"
    damaged.write_bytes(gzip.compress(b"ein hund\n")[:-6])
    with pytest.raises(moses.MosesError, match=f"cannot read {damaged}"):
        moses.tokenize_file(damaged, tmp_path / "d.de", "de", lowercase=False)
    assert not (tmp_path / "d.de").exists()


def test_moses_without_sacremoses_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import fails
    with pytest.raises(moses.MosesError, match=r"needs sacremoses in .*pip install sacremoses"):
        moses.tokenizer("en", lowercase=False)


def test_bpe_files_are_subword_nmts_apply_bpe(tmp_path: Path, capsys) -> None:
    from fairseq_mmt_adv.recipes import bpe

    text = "ein hund läuft im park .\n  zwei hunde laufen  \n\nein mann sitzt auf der bank .\n"
    (tmp_path / "train.de").write_text(text * 3, encoding="utf-8")
    codes = tmp_path / "codes"
    cli = str(Path(sys.executable).parent / "subword-nmt")
    learn = [cli, "learn-bpe", "--symbols", "12", "--input", str(tmp_path / "train.de")]
    subprocess.run([*learn, "--output", str(codes)], check=True)
    apply = [cli, "apply-bpe", "--codes", str(codes), "--input", str(tmp_path / "train.de")]
    subprocess.run([*apply, "--output", str(tmp_path / "cli.de")], check=True)
    jobs = [(str(codes), str(tmp_path / "train.de"), str(tmp_path / "ours.de"))]
    bpe.apply_bpe_files(jobs, workers=2)
    assert (tmp_path / "ours.de").read_bytes() == (tmp_path / "cli.de").read_bytes()
    assert "@@ " in (tmp_path / "ours.de").read_text(encoding="utf-8")
    missing = [str(tmp_path / "no-codes"), str(tmp_path / "train.de"), str(tmp_path / "x.de")]
    assert bpe.main(["--prog", "prep", *missing]) == 1
    assert capsys.readouterr().err.startswith(
        f"prep: error: cannot read the BPE codes {missing[0]}"
    )
    assert not (tmp_path / "x.de").exists() and not (tmp_path / "x.de.tmp").exists()


@pytest.mark.parametrize("module", ["bpe", "features", "moses"])
def test_the_file_commands_take_triples(module: str, capsys) -> None:
    from importlib import import_module

    command = import_module(f"fairseq_mmt_adv.recipes.{module}")
    argv = ["link"] if module == "features" else []
    with pytest.raises(SystemExit) as exit_:
        command.main([*argv, "a", "b"])
    assert exit_.value.code == 2
    assert f"error: give the files as {command.JOBS} triples" in capsys.readouterr().err
