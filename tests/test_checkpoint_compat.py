"""Checkpoints load under torch >= 2.6 (weights-only unpickling), old ones included."""

import argparse
import filecmp
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import PACKAGE_DIR, generate, train

LEGACY = Path(__file__).resolve().parent / "data" / "legacy-cgru"
LEGACY_TRANSFORMER = LEGACY.parent / "legacy-transformer"


def scored_hypotheses(output: str) -> dict[int, tuple[float, str]]:
    found = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            head, score, text = line.split("\t", 2)
            found[int(head[2:])] = (float(score), text)
    return found


@pytest.mark.parametrize("legacy", [LEGACY, LEGACY_TRANSFORMER], ids=["cgru", "transformer"])
def test_a_checkpoint_of_the_argparse_era_loads_and_decodes_as_it_did(
    tiny_corpus, tmp_path, legacy
):
    """cGRU: options as argparse flags; Transformer: features normalized by the task, no
    normalization buffers in the model's state."""
    for lang in ("en", "de"):  # the same data as the checkpoint was trained on
        assert filecmp.cmp(legacy / f"dict.{lang}.txt", tiny_corpus / "bin" / f"dict.{lang}.txt")
    checkpoint = tmp_path / "checkpoint.pt"
    shutil.copy(legacy / "checkpoint.pt.bin", checkpoint)
    state = torch.load(checkpoint, weights_only=True)  # the plugin's allow-list suffices
    assert isinstance(state["cfg"]["model"], argparse.Namespace)
    output = generate(
        str(tiny_corpus / "bin"), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation",
        "--visual-features", str(tiny_corpus / "features"), "--path", str(checkpoint),
        "--gen-subset", "test", "--beam", "2", "--batch-size", "16",
    )  # fmt: skip
    got = scored_hypotheses(output)
    expected = scored_hypotheses((legacy / "hypotheses.txt").read_text())
    assert len(expected) == 61 and got.keys() == expected.keys()
    for sentence, (score, text) in expected.items():
        assert got[sentence][1] == text
        assert got[sentence][0] == pytest.approx(score, abs=1e-5)


def test_a_new_cgru_checkpoint_needs_no_allow_listed_type(tiny_corpus, tmp_path):
    """The model's options are a dataclass now: the checkpoint stores them as a plain dict."""
    train(
        str(tiny_corpus / "bin"), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation",
        "--visual-features", str(tiny_corpus / "features"), "--arch", "cgru_mmt_small",
        "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--optimizer", "adam",
        "--lr", "0.01", "--batch-size", "16", "--max-update", "2", "--save-dir", str(tmp_path),
        "--no-epoch-checkpoints",
    )  # fmt: skip
    # a fresh interpreter that never imports the plugin: torch's own allow-list only
    code = (
        "import sys, torch; state = torch.load(sys.argv[1], weights_only=True); "
        "print(type(state['cfg']['model']).__name__, state['cfg']['model']['_name'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "checkpoint_last.pt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["dict", "cgru_mmt_small"]


def test_the_task_state_read_stays_when_the_checkpoint_is_overwritten_in_place(tmp_path):
    # fairseq-train copies checkpointN.pt over the checkpoint_last.pt a run resumed from
    from fairseq_mmt_adv.checkpoints.loading import read_task_state

    def saved(sign: float) -> bytes:
        stats = (sign * torch.arange(64, dtype=torch.float32), torch.ones(64))
        buffer = io.BytesIO()
        torch.save(
            {"model": {"w": torch.full((256,), sign)}, "task_state": {"stats": stats}}, buffer
        )
        return buffer.getvalue()

    path = tmp_path / "checkpoint_last.pt"
    path.write_bytes(saved(1.0))
    state = read_task_state(str(path))
    newer = saved(-1.0)
    assert len(newer) == path.stat().st_size
    with open(path, "r+b") as f:  # the same inode, as fairseq's PathManager.copy writes it
        f.write(newer)
    torch.testing.assert_close(state["stats"][0], torch.arange(64, dtype=torch.float32))
    torch.testing.assert_close(state["stats"][1], torch.ones(64))
