"""Test helpers: tiny generated corpora and fairseq's CLIs run in-process (as fairseq's own
``tests/utils.py`` runs them), with their log captured."""

import contextlib
import io
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_cli import generate as generate_cli
from fairseq_cli import preprocess as preprocess_cli
from fairseq_cli import train as train_cli

import fairseq_mmt_adv

PACKAGE_DIR = os.path.dirname(fairseq_mmt_adv.__file__)
BIN_DIR = Path(sys.executable).parent
SPLIT_SIZES = {"train": 100, "valid": 37, "test": 61}  # not multiples of 8 on purpose
FEATURE_DIM = 16
# In-process runs load their batches in the test's process, as fairseq's own tests/utils.py
# does: a DataLoader worker process, fairseq's default, is shut down when its iterator is
# collected, and that waits up to 5 s (torch's MP_STATUS_CHECK_INTERVAL) for each iterator.
IN_PROCESS = ("--cpu", "--num-workers", "0")
# Python that fails unless the plugin's architectures are registered with fairseq
REGISTERED = (
    "from fairseq.models import ARCH_MODEL_REGISTRY as A; "
    "assert 'cgru_mmt' in A and 'transformer_mmt' in A, 'the plugin is not registered'"
)


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


@contextlib.contextmanager
def captured_log():
    """Everything logged at INFO and above while the block runs, as a StringIO."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def preprocess(raw: Path, destdir: Path, *extra: str) -> None:
    """``fairseq-preprocess`` en -> de of ``raw/{train,valid,test}.{en,de}``, in-process."""
    parser = options.get_preprocessing_parser()
    args = parser.parse_args(
        [
            "--source-lang",
            "en",
            "--target-lang",
            "de",
            "--trainpref",
            str(raw / "train"),
            "--validpref",
            str(raw / "valid"),
            "--testpref",
            str(raw / "test"),
            "--destdir",
            str(destdir),
            "--workers",
            "1",
            *extra,
        ]
    )
    with captured_log():
        preprocess_cli.main(args)


def task_flags(corpus: Path, features: Path | str | None = None) -> list[str]:
    """``corpus/bin`` with the plugin's task, and ``--visual-features`` when given."""
    flags = [str(corpus / "bin"), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    return flags + ([] if features is None else ["--visual-features", str(features)])


def train(*argv: str) -> str:
    """``fairseq-train ARGV`` in-process on one CPU thread; returns its log."""
    forget_earlier_runs()
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [*argv, *IN_PROCESS, "--no-progress-bar"])
    cfg = convert_namespace_to_omegaconf(args)
    with captured_log() as log, single_thread():
        train_cli.main(cfg)
    return log.getvalue()


def forget_earlier_runs() -> None:
    """fairseq keeps the best validation score of a run (checkpoint_best, early stopping) in
    function attributes, which would carry over from one in-process run to the next."""
    for function in (checkpoint_utils.save_checkpoint, train_cli.should_stop_early):
        for name in ("best", "num_runs"):
            if hasattr(function, name):
                delattr(function, name)


def generate(*argv: str) -> str:
    """``fairseq-generate ARGV`` in-process; returns its output (H-, S-, ... lines) and log."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [*argv, *IN_PROCESS])
    out = io.StringIO()
    with captured_log() as log, single_thread():
        generate_cli._main(convert_namespace_to_omegaconf(args), out)
    return out.getvalue() + log.getvalue()


@contextlib.contextmanager
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def setup_task(data: Path, *extra: str, arch: str = "cgru_mmt_small"):
    """A ``multimodal_translation`` task configured from fairseq-train style flags."""
    parser = options.get_training_parser()
    argv = [
        str(data),
        "--user-dir",
        PACKAGE_DIR,
        "--task",
        "multimodal_translation",
        "--arch",
        arch,
        *extra,
    ]
    args = options.parse_args_and_arch(parser, argv)
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task), cfg


def hypotheses(output: str) -> dict[int, str]:
    """``{sentence id: hypothesis}`` from fairseq-generate's ``H-`` lines."""
    found = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            head, _, text = line.split("\t", 2)
            found[int(head[2:])] = text
    return found


def small_demo_corpus(root: Path, feature_dim: int) -> Path:
    """The demo corpus at 300 / 40 / 45 sentences, binarized into ``root/bin``."""
    from fairseq_mmt_adv.recipes.demo_corpus import generate_demo_corpus

    sizes = {"train": 300, "valid": 40, "test": 45}
    generate_demo_corpus(root, sizes=sizes, feature_dim=feature_dim)
    preprocess(root / "raw", root / "bin")
    return root
