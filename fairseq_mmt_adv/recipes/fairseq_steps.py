"""Steps shared by the scripts that drive fairseq's command-line tools.

* :func:`run_logged`: run a command (a fairseq CLI) as a process of its own with its output in
  a log file, its wall time and peak memory measured; a failure raises :class:`StepError` with
  the log's tail;
* :func:`prepare_demo_corpus`: the demo corpus (``recipes.demo_corpus``) generated and
  binarized with ``fairseq-preprocess``, once per setting;
* :func:`environment`: the versions of torch and fairseq and the device, in one line.

Command line (for ``scripts/device-check.sh``)::

    python -m fairseq_mmt_adv.recipes.fairseq_steps environment
"""

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

BIN = Path(sys.executable).parent
# the plugin's folder, for --user-dir
USER_DIR = str(Path(__file__).resolve().parents[1])


class StepError(RuntimeError):
    """A command failed; the message names it, its log and the log's last lines."""


class Usage(NamedTuple):
    seconds: float  # wall time
    peak_mib: float  # the process's maximum resident set size


class DemoCorpus(NamedTuple):
    root: Path  # generate_demo_corpus's output: raw/, features/
    bin: Path  # fairseq-preprocess's output
    features: Path


def fairseq_cli(name: str) -> str:
    """``fairseq-NAME`` next to this Python (the environment's)."""
    return str(BIN / f"fairseq-{name}")


def thread_env(threads: int | None) -> dict[str, str]:
    """This process's environment, with OMP/MKL limited to ``threads`` when given."""
    if threads is None:
        return dict(os.environ)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_logged(
    command: Sequence[str],
    log: str | Path,
    threads: int | None = None,
    tail: int = 30,
    timeout: float | None = None,
) -> Usage:
    """Run ``command`` with stdout and stderr in ``log``; its wall time and peak memory.

    ``timeout``: seconds after which the command is killed. Raises StepError with the last
    ``tail`` lines of the log when the command fails or is killed.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    returncode, peak_kib = run_process(command, log, thread_env(threads), timeout)
    if returncode != 0:
        lines = log.read_text(errors="replace").splitlines(keepends=True)[-tail:]
        name = " ".join([Path(command[0]).name, *command[1:2]])
        killed = timeout is not None and returncode == KILLED
        ending = f"was killed after {timeout} s" if killed else "failed"
        raise StepError(
            f"{name} {ending} with exit status {returncode} (log: {log}):\n{''.join(lines)}"
        )
    return Usage(time.time() - start, peak_kib / 1024)


KILLED = -signal.SIGKILL  # the exit status of a command killed for its timeout


def run_process(
    command: Sequence[str], log: Path, environment: dict[str, str], timeout: float | None = None
) -> tuple[int, float]:
    """``command`` as a process of its own, output in ``log``: its exit status and its peak
    resident memory in KiB (``os.wait4``'s resource usage of that process)."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=environment
        )
        killer = threading.Timer(timeout, process.kill) if timeout else None
        if killer:
            killer.start()
        _, status, usage = os.wait4(process.pid, 0)
        if killer:
            killer.cancel()
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss


def prepare_demo_corpus(
    root: str | Path,
    seed: int = 1,
    feature_dim: int | None = None,
    threads: int | None = 1,
    sizes: dict[str, int] | None = None,
) -> DemoCorpus:
    """The demo corpus under ``root``, binarized (en -> de, one dictionary per language) in
    ``root/bin``; kept between runs and made again when a setting differs.

    ``feature_dim`` and ``sizes`` default to ``generate_demo_corpus``'s. The preprocessing log
    is ``root/preprocess.log``.
    """
    from fairseq_mmt_adv.recipes.demo_corpus import generate_demo_corpus

    root = Path(root)
    corpus = DemoCorpus(root, root / "bin", root / "features")
    options = {"seed": seed}
    options.update({"feature_dim": feature_dim} if feature_dim else {})
    options.update({"sizes": dict(sorted(sizes.items()))} if sizes else {})
    stamp, settings = root / "prepared.txt", f"{options}\n"
    if stamp.is_file() and stamp.read_text() == settings and (corpus.bin / "dict.de.txt").is_file():
        return corpus
    stamp.unlink(missing_ok=True)
    generate_demo_corpus(root, **options)
    raw, partial = root / "raw", root / "bin.partial"
    command = [fairseq_cli("preprocess"), "--source-lang", "en", "--target-lang", "de"]
    command += ["--trainpref", str(raw / "train"), "--validpref", str(raw / "valid")]
    command += ["--testpref", str(raw / "test"), "--destdir", str(partial), "--workers", "1"]
    shutil.rmtree(partial, ignore_errors=True)  # fairseq-preprocess refuses existing dictionaries
    run_logged(command, root / "preprocess.log", threads)
    shutil.rmtree(corpus.bin, ignore_errors=True)
    partial.rename(corpus.bin)
    stamp.write_text(settings)
    return corpus


def environment() -> str:
    """``torch X | fairseq Y | device Z`` (Z: the CUDA device's name, else cpu)."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return f"torch {torch.__version__} | fairseq {installed_version('fairseq')} | device {device}"


def installed_version(module: str) -> str:
    """The version of the distribution that installs ``module``, read from its metadata rather
    than by importing it (fairseq's import takes seconds), else the module's __version__."""
    from importlib import metadata

    for distribution in metadata.packages_distributions().get(module, []):
        return metadata.version(distribution)
    return importlib.import_module(module).__version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_mmt_adv.recipes.fairseq_steps")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("environment", help="print the versions of torch and fairseq, the device")
    parser.parse_args(argv)
    print(environment())
    return 0


if __name__ == "__main__":
    sys.exit(main())
