"""Shared fixtures: a tiny binarized corpus with feature files, and fairseq task set-up."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import fairseq_mmt_adv

PACKAGE_DIR = os.path.dirname(fairseq_mmt_adv.__file__)
BIN_DIR = Path(sys.executable).parent
SPLIT_SIZES = {"train": 100, "valid": 37, "test": 61}  # not multiples of 8 on purpose
FEATURE_DIM = 16

# Two torch threads on a 2-core machine shared with other processes oversubscribe badly.
torch.set_num_threads(1)


def fairseq_cli(name: str) -> str:
    return str(BIN_DIR / f"fairseq-{name}")


def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_tiny_corpus(root: Path) -> None:
    """Sentences of varied length (1-12 words) and features whose row i encodes i."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    for split, size in SPLIT_SIZES.items():
        src, tgt = [], []
        for _ in range(size):
            sentence = [rng.choice(words) for _ in range(rng.randint(1, 12))]
            src.append(" ".join(sentence))
            tgt.append(" ".join(w.upper() for w in reversed(sentence)))
        (root / f"{split}.en").write_text("\n".join(src) + "\n")
        (root / f"{split}.de").write_text("\n".join(tgt) + "\n")
        features = np.random.RandomState(size).rand(size, FEATURE_DIM).astype(np.float32)
        features[:, 0] = np.arange(size)  # row i says it is row i
        (root / "features").mkdir(exist_ok=True)
        np.save(root / "features" / f"{split}.npy", features)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """``root/bin`` (binarized en-de) and ``root/features/{split}.npy``."""
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_corpus(root)
    subprocess.run(
        [fairseq_cli("preprocess"), "--source-lang", "en", "--target-lang", "de",
         "--trainpref", str(root / "train"), "--validpref", str(root / "valid"),
         "--testpref", str(root / "test"), "--destdir", str(root / "bin"), "--workers", "1"],
        check=True, capture_output=True, env=cli_env(),
    )  # fmt: skip
    return root


def setup_task(data: Path, *extra: str):
    """A ``multimodal_translation`` task configured from fairseq-train style flags."""
    parser = options.get_training_parser()
    argv = [str(data), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation",
            "--arch", "cgru_mmt_small", *extra]  # fmt: skip
    args = options.parse_args_and_arch(parser, argv)
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task), cfg
