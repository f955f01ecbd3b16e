"""Let torch >= 2.6 load fairseq checkpoints.

torch 2.6 switched ``torch.load`` to ``weights_only=True``; fairseq's checkpoints store the
training configuration, whose model part is an ``argparse.Namespace`` for architectures
registered with ``register_model_architecture``, so stock ``fairseq-generate`` fails with
``Unsupported global: argparse.Namespace``. Data-parallel training meets the same
loader when it resumes: rank 0 reads the checkpoint and ``broadcast_object`` pickles it to the
other ranks, by then with the configuration as an omegaconf ``DictConfig``. Rather than turning
the safe loader off, we add the few plain-data types fairseq writes to its allow-list. Importing
the plugin (``--user-dir``) is enough; the user sets nothing.
"""

import argparse
import collections
import typing

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
