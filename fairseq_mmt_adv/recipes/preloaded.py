"""fairseq's command-line tools run in children forked from one process that imported fairseq.

Every ``fairseq-train`` or ``fairseq-generate`` process spends about 5 s of CPU importing torch,
fairseq and what fairseq imports (scikit-learn, scipy) before it reads its first flag. A script
that runs many of them, such as the demo (a preprocessing, then a training and a decoding per
system), starts one :mod:`multiprocessing` forkserver that imports them once, and runs each
command in a child forked from it: the console script's own entry point (``cli_main``), its
argument list, its output in the log file and its exit status. Only the start differs.

:func:`run` is what :func:`fairseq_mmt_adv.recipes.fairseq_steps.run_logged` calls with
``preloaded=True`` for the commands in :data:`ENTRY_POINTS`; :func:`call` runs a Python function
there. Its users run on the CPU (the demo, the data-parallel test): a CUDA child of a forked
process works only if the server never initialized CUDA, which has not been checked on a GPU.
"""

import importlib
import logging
import multiprocessing
import multiprocessing.util
import os
import resource
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# the console scripts that run forked, and the modules that hold their cli_main
ENTRY_POINTS = {
    "fairseq-preprocess": "fairseq_cli.preprocess",
    "fairseq-train": "fairseq_cli.train",
    "fairseq-generate": "fairseq_cli.generate",
}
# fairseq_cli.train sets up the root logger before it imports fairseq, whose import (a
# wav2vec2 module's logging.basicConfig) sets it up for the others; so the server imports
# everything but fairseq_cli.train, and a train child imports it on a bare root logger, as a
# new interpreter would: each log then reads as the console script's
FRESH_LOGGING = {"fairseq-train"}
# what the forkserver imports once (the plugin too: --user-dir finds it loaded); torch's first
# optimizer imports torch._dynamo (torch.optim.Optimizer.__init__ is wrapped to disable it),
# 2.4 s of every fairseq-train start that forked trainings would otherwise each pay again
PRELOAD = [
    *(ENTRY_POINTS[name] for name in ENTRY_POINTS if name not in FRESH_LOGGING),
    "fairseq_mmt_adv",
    "torch._dynamo",
]


def handles(command: Sequence[str], bin_dir: Path) -> bool:
    """Whether ``command`` is one of :data:`ENTRY_POINTS` of the environment in ``bin_dir``."""
    executable = Path(command[0])
    return executable.name in ENTRY_POINTS and executable.parent == bin_dir


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # effective when the server starts, the first time
    return context


def run(
    command: Sequence[str], log: Path, environment: dict[str, str], timeout: float | None = None
) -> tuple[int, float]:
    """Run ``command`` (see :func:`handles`) forked, output in ``log``, killed after ``timeout``
    seconds: its exit status (that of SIGKILL when killed) and peak KiB."""
    context = _context()
    peak_kib = context.RawValue("d", 0.0)
    # not a daemon: fairseq-train's DataLoader starts worker processes of its own
    child = context.Process(target=_main, args=(list(command), str(log), environment, peak_kib))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
    return child.exitcode, peak_kib.value


def call(function, *args):
    """``function(*args)`` in a child forked from the preloaded process, and its (picklable)
    result: for the Python steps of a script that runs its CLIs forked, such as the demo's last
    one, which would otherwise import fairseq again. ``function`` is a module's top-level one; a
    failure in the child (its traceback on stderr) raises :class:`ChildProcessError`."""
    context = _context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_call, args=(send, function, args))
    child.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    child.join()
    if child.exitcode != 0:
        name = f"{function.__module__}.{function.__qualname__}"
        raise ChildProcessError(f"{name} failed in its forked child (exit status {child.exitcode})")
    return result


def _call(send, function, args) -> None:
    send.send(function(*args))


def _main(command: list[str], log: str, environment: dict[str, str], peak_kib) -> None:
    """In the child: the log as stdout and stderr, the environment and threads, then cli_main."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(descriptor, stream.fileno())
    os.close(descriptor)
    os.environ.clear()
    os.environ.update(environment)
    tempfile.tempdir = None  # TMPDIR as the command's environment has it, not the server's
    threads = environment.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    # multiprocessing made forkserver this child's default; fairseq's DataLoader workers start
    # with the platform's default, as in the console script
    multiprocessing.set_start_method(None, force=True)
    # a DataLoader worker that shares a tensor makes a temporary directory for its socket,
    # and leaves it in /tmp when it is terminated; made here, the workers inherit this
    # child's, which it removes when it ends
    multiprocessing.util.get_temp_dir()
    sys.argv = [Path(command[0]).name, *command[1:]]
    if sys.argv[0] in FRESH_LOGGING:
        bare_root_logger()
    try:
        importlib.import_module(ENTRY_POINTS[sys.argv[0]]).cli_main()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        peak_kib.value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bare_root_logger() -> None:
    """The root logger as a new interpreter has it: no handler, level WARNING."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
