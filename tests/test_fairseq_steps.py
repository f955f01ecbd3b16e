"""fairseq_mmt_adv.recipes.fairseq_steps and .benchmarks: logged commands, the demo corpus, the
benchmark systems."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fairseq import options

from fairseq_mmt_adv.models.cgru_mmt import CGRUMMTConfig
from fairseq_mmt_adv.recipes import benchmarks, fairseq_steps, systems


def test_run_logged_writes_the_log_and_limits_threads(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "step.log"
    code = "import os, sys; print(os.environ['OMP_NUM_THREADS']); print('err', file=sys.stderr)"
    usage = fairseq_steps.run_logged([sys.executable, "-c", code], log, threads=3)
    assert log.read_text().split() == ["3", "err"]
    assert usage.seconds > 0 and usage.peak_mib > 1


def test_run_logged_fails_with_the_logs_tail(tmp_path: Path) -> None:
    code = "for i in range(50): print('line', i)\nraise SystemExit(7)"
    log = tmp_path / "fail.log"
    with pytest.raises(fairseq_steps.StepError) as error:
        fairseq_steps.run_logged([sys.executable, "-c", code], log, tail=2)
    message = str(error.value)
    assert message.startswith(f"{Path(sys.executable).name} -c failed with exit status 7")
    assert f"(log: {log})" in message
    assert message.endswith("line 48\nline 49\n") and "line 47" not in message


def test_a_fairseq_cli_runs_as_its_console_script(tmp_path: Path) -> None:
    help_log, error_log = tmp_path / "help.log", tmp_path / "error.log"
    usage = fairseq_steps.run_logged(
        [fairseq_steps.fairseq_cli("preprocess"), "--help"], help_log, threads=1
    )
    assert help_log.read_text().startswith("usage: fairseq-preprocess")
    assert usage.seconds > 0 and usage.peak_mib > 1
    train = [fairseq_steps.fairseq_cli("train"), "--arch", "no_such_arch"]
    with pytest.raises(fairseq_steps.StepError) as error:
        fairseq_steps.run_logged(train, error_log)
    assert str(error.value).startswith("fairseq-train --arch failed with exit status 2")
    assert "invalid choice: 'no_such_arch'" in error_log.read_text()  # argparse's message


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; print('waiting', flush=True); time.sleep(60)"]
    with pytest.raises(fairseq_steps.StepError, match="-c was killed after 0.5 s") as error:
        fairseq_steps.run_logged(sleeper, tmp_path / "sleep.log", timeout=0.5)
    assert str(error.value).endswith("waiting\n")
    # a lone rank of two waits for the other: a fairseq-train is killed too
    lone = [fairseq_steps.fairseq_cli("train"), str(tmp_path), "--arch", "lstm", "--cpu"]
    lone += ["--distributed-no-spawn"]
    lone += ["--distributed-world-size", "2", "--distributed-rank", "0"]
    lone += ["--distributed-backend", "gloo", "--distributed-init-method", "tcp://127.0.0.1:29533"]
    with pytest.raises(fairseq_steps.StepError, match="was killed after 2 s"):
        fairseq_steps.run_logged(lone, tmp_path / "rank0.log", timeout=2)


# fairseq-preprocess's part that prepare_demo_corpus relies on: --destdir gets the dictionaries
# (the real one runs in tests/test_end_to_end.py's demo run; here the steps around it are tested)
FAKE_PREPROCESS = """\
import sys
import types
from pathlib import Path
args = sys.argv[1:]
destdir = Path(args[args.index("--destdir") + 1])
assert not destdir.exists(), "fairseq-preprocess refuses existing dictionaries"
destdir.mkdir()
train = Path(args[args.index("--trainpref") + 1] + ".de").read_text()
(destdir / "dict.de.txt").write_text(f"{len(train.splitlines())} sentences")
"""


def test_prepare_demo_corpus_binarizes_once_per_setting(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "fairseq-preprocess"
    fake.write_text(f"#!{sys.executable}\n{FAKE_PREPROCESS}")
    fake.chmod(0o755)
    monkeypatch.setattr(
        fairseq_steps, "fairseq_cli", lambda name: str(tmp_path / f"fairseq-{name}")
    )
    sizes = {"train": 30, "valid": 8, "test": 9}
    corpus = fairseq_steps.prepare_demo_corpus(tmp_path / "c", feature_dim=6, sizes=sizes)
    assert corpus.bin == tmp_path / "c" / "bin" and corpus.features == tmp_path / "c" / "features"
    for split, rows in sizes.items():
        assert np.load(corpus.features / f"{split}.npy").shape == (rows, 6)
        assert len((corpus.root / "raw" / f"{split}.en").read_text().splitlines()) == rows
    dictionary = corpus.bin / "dict.de.txt"
    assert dictionary.read_text() == "30 sentences"
    made = dictionary.stat().st_mtime_ns
    again = fairseq_steps.prepare_demo_corpus(tmp_path / "c", feature_dim=6, sizes=sizes)
    assert again == corpus and dictionary.stat().st_mtime_ns == made  # kept
    fairseq_steps.prepare_demo_corpus(tmp_path / "c", seed=2, sizes={**sizes, "train": 20})
    assert dictionary.read_text() == "20 sentences"  # other settings: made again
    assert np.load(corpus.features / "train.npy").shape == (20, 512)
    assert "'seed': 2" in (corpus.root / "prepared.txt").read_text()
    assert not (corpus.root / "bin.partial").exists()


def test_environment_names_the_versions_and_the_device(monkeypatch) -> None:
    import fairseq
    import torch

    line = fairseq_steps.environment()
    assert line.startswith(f"torch {torch.__version__} | fairseq {fairseq.__version__} | device ")
    # a module that no installed distribution lists: its __version__
    monkeypatch.setitem(sys.modules, "not_installed", types.SimpleNamespace(__version__="1.2"))
    assert fairseq_steps.installed_version("not_installed") == "1.2"


def parse(name: str) -> object:
    argv = benchmarks.train_flags(name, "data", "features")
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def benchmarked_system(name: str) -> systems.System:
    """The system of systems.py behind a benchmark name (``cgru+q-waae`` -> ``q-waae``)."""
    if name.startswith("cgru"):
        return systems.get(name.split("+")[1] if "+" in name else "baseline")
    return systems.get(name)


@pytest.mark.parametrize("name", list(benchmarks.SYSTEMS))
def test_benchmark_systems_parse_as_fairseq_train_flags(name: str) -> None:
    args = parse(name)
    assert (args.optimizer, args.lr, args.clip_norm) == ("adam", [4e-4], 1.0)
    if name in ("lstm", "transformer"):  # fairseq's stock models, the families' references
        assert (args.task, args.arch, args.criterion) == (
            "translation",
            name,
            "label_smoothed_cross_entropy",
        )
        return
    system = benchmarked_system(name)
    arch = {"cgru": "cgru_mmt", "transformer": "transformer_mmt_tiny"}[system.family]
    assert (args.task, args.visual_features, args.arch) == (
        "multimodal_translation",
        "features",
        arch,
    )
    assert getattr(args, "reconstruction", None) == system.reconstruction
    assert args.visual_fusion == system.fusion
    reference = getattr(args, "cgru_implementation", None) == "reference"
    assert reference == (name == "cgru-reference")


def test_the_lstm_has_the_cgrus_sizes() -> None:
    lstm, cgru = parse("lstm"), CGRUMMTConfig()
    for size in ("encoder_embed_dim", "encoder_hidden_size", "decoder_embed_dim"):
        assert getattr(lstm, size) == getattr(cgru, size), size
    for size in ("decoder_hidden_size", "decoder_out_embed_dim"):
        assert getattr(lstm, size) == getattr(cgru, size), size
    assert lstm.encoder_bidirectional


def test_an_unknown_benchmark_system_is_named() -> None:
    with pytest.raises(ValueError, match="unknown benchmark system 'gru': one of lstm, "):
        benchmarks.train_flags("gru", "data", "features")
