"""Let torch >= 2.6 load fairseq checkpoints, and name a damaged one with a way out.

torch 2.6 switched ``torch.load`` to ``weights_only=True``; fairseq's checkpoints store the
training configuration, whose model part is an ``argparse.Namespace`` for architectures
registered with ``register_model_architecture``, so stock ``fairseq-generate`` fails with
``Unsupported global: argparse.Namespace``. Data-parallel training meets the same
loader when it resumes: rank 0 reads the checkpoint and ``broadcast_object`` pickles it to the
other ranks, by then with the configuration as an omegaconf ``DictConfig``. Rather than turning
the safe loader off, we add the few plain-data types fairseq writes to its allow-list. Importing
the plugin (``--user-dir``) is enough; the user sets nothing.

Who needs which entry: ``argparse.Namespace`` the checkpoints of ``transformer_mmt`` (registered
the way fairseq registers ``transformer``) and of ``cgru_mmt`` before its options became a
dataclass; the numpy types the training meters of ``--eval-bleu`` runs; the omegaconf types and
``_TensorPlaceholder`` the state that rank 0 broadcasts when a data-parallel run resumes. A new
``cgru_mmt`` checkpoint needs none of them (tested).

A truncated checkpoint fails deep in torch (``PytorchStreamReader failed reading zip archive``)
without its name. The task checks the files before fairseq reads them: the checkpoint a run
resumes from (:func:`read_task_state`) and those ``fairseq-generate --path`` names
(:func:`check_intact`); a damaged one raises :class:`CheckpointError` naming it and the newest
intact checkpoint beside it.
"""

import argparse
import collections
import glob
import math
import os
import pickle
import re
import typing
import zipfile
from typing import Any

import numpy as np
import torch
from fairseq.distributed.utils import _TensorPlaceholder
from omegaconf import AnyNode, DictConfig, ListConfig
from omegaconf.base import ContainerMetadata, Metadata

_multiarray = getattr(np, "_core", getattr(np, "core", None)).multiarray

SAFE_CHECKPOINT_GLOBALS = [
    argparse.Namespace,
    # ``extra_state`` keeps the training meters: with --eval-bleu they hold numpy arrays (BLEU
    # n-gram counts) and numpy scalars
    np.ndarray,
    np.dtype,
    _multiarray._reconstruct,
    _multiarray.scalar,
    *{type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")},
    # the configuration as broadcast to the other ranks on resume: omegaconf containers, their
    # metadata, and the types that metadata names (key/element types, defaultdict flags)
    DictConfig,
    ListConfig,
    AnyNode,
    ContainerMetadata,
    Metadata,
    typing.Any,
    collections.defaultdict,
    dict,
    list,
    int,
    # broadcast_object sends the tensors apart and leaves these in their place
    _TensorPlaceholder,
]


def allow_fairseq_checkpoint_globals() -> None:
    """Register the types found in fairseq checkpoints as safe for ``weights_only`` loading."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 has no allow-list and loads them anyway
        add_safe_globals(SAFE_CHECKPOINT_GLOBALS)


allow_fairseq_checkpoint_globals()


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def is_intact(path: str) -> bool:
    """Whether ``path`` is a whole zip archive (torch's format), every member's CRC checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


# fairseq's end-of-epoch (checkpointE.pt) and mid-epoch (checkpoint_E_U.pt) checkpoint names
EPOCH_CHECKPOINT = re.compile(r"checkpoint(\d+)\.pt|checkpoint_(\d+)_(\d+)\.pt")


def resume_order(path: str) -> tuple:
    """Sort key, newest training state last: epoch checkpoints (``checkpointE.pt``,
    ``checkpoint_E_U.pt``) by epoch and update, after the others (``checkpoint_best.pt``...), which
    may hold an older epoch than their file time suggests; file time breaks ties."""
    numbers = EPOCH_CHECKPOINT.fullmatch(os.path.basename(path))
    if numbers is None:
        return (0, 0, 0, os.path.getmtime(path))
    if numbers[1] is not None:  # the end of epoch E comes after its mid-epoch checkpoints
        return (1, int(numbers[1]), math.inf, os.path.getmtime(path))
    return (1, int(numbers[2]), int(numbers[3]), os.path.getmtime(path))


def damaged_checkpoint_error(path: str, error: Exception) -> CheckpointError:
    directory = os.path.dirname(os.path.abspath(path))
    others = sorted(glob.glob(os.path.join(directory, "checkpoint*.pt")), key=resume_order)
    intact = [p for p in reversed(others) if not os.path.samefile(p, path) and is_intact(p)]
    if intact:
        advice = f"resume from the newest intact one with --restore-file {intact[0]}"
    else:
        advice = "no intact checkpoint is beside it: give --restore-file another, or delete it"
    return CheckpointError(
        f"checkpoint {path} cannot be read ({str(error).splitlines()[0]}): the file is damaged "
        f"(a save that was cut short?); {advice}"
    )


def check_intact(path: str) -> None:
    """Raise :class:`CheckpointError` (naming ``path`` and a way out) if the checkpoint file is
    damaged: what the task checks before fairseq reads a checkpoint to decode, so that a cut-short
    file is named instead of failing deep in torch."""
    if os.path.isfile(path) and not is_intact(path):
        raise damaged_checkpoint_error(path, ValueError("not a whole zip archive"))


def read_task_state(path: str) -> dict[str, Any]:
    """The task state stored in a checkpoint (see :func:`read_entry`)."""
    return read_entry(path, "task_state") or {}


def read_entry(path: str, key: str) -> Any:
    """``key`` of a checkpoint (``task_state``, ``criterion``...), read without loading the
    model's tensors; None when it has none.

    The file is memory-mapped, so the task state's tensors are copied out of it: fairseq-train
    overwrites ``checkpoint_last.pt`` in place, and a tensor still mapped from it would then
    read the new file's bytes (a resumed run's feature statistics turned to garbage that way).
    """
    return copied_out(read_mapped(path).get(key))


def read_mapped(path: str) -> dict[str, Any]:
    """A whole checkpoint, its tensors memory-mapped (nothing is read until used); a damaged
    file raises :class:`CheckpointError`. Copy out what is kept (:func:`read_entry`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        if is_intact(path):
            raise
        raise damaged_checkpoint_error(path, error) from error


def copied_out(value):
    """``value`` with every tensor in it (in dicts, lists and tuples) cloned into memory."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: copied_out(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(copied_out(item) for item in value)
    return value
