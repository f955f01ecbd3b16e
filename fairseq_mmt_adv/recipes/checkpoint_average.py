"""Average the parameters of fairseq checkpoints of one run into a single model.

The usual use is the last few epochs of a run (``--keep-last-epochs N``): the average is still
one model, of the same architecture, and ``fairseq-generate --path avg.pt`` decodes it like any
checkpoint. Floating-point tensors of the model are averaged (summed in float64, stored in their
own dtype); other tensors must be equal in every input. The inputs must agree in their model and
criterion configuration, and in their parameters' names and shapes: the first difference is
named. The rest of the checkpoint (configuration, the criterion's G and D, training history) is
the last input's; the optimizer state is left out, so the result decodes but does not resume.

Imports torch, not fairseq (``scripts/average_checkpoints.py`` is the command).
"""

from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path

import torch

from fairseq_mmt_adv.checkpoints.loading import EPOCH_CHECKPOINT  # and torch >= 2.6 loads fairseq's

# The configuration sections that make two checkpoints different systems.
COMPARED_SECTIONS = ("model", "criterion")
# fairseq's name of the checkpoint saved at the end of epoch N.


class AveragingError(ValueError):
    """Inputs that cannot be averaged; the message names the file and the difference."""


def load(path: Path) -> dict:
    if not path.is_file():
        raise AveragingError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu")
    if "model" not in state:
        raise AveragingError(f"{path} is not a fairseq checkpoint (no 'model')")
    return state


def _plain(value):
    """Config sections as plain dicts (omegaconf, argparse.Namespace), for comparison."""
    if isinstance(value, Namespace):
        value = vars(value)
    if hasattr(value, "items") and not isinstance(value, Mapping):  # omegaconf DictConfig
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def system_config(state: dict) -> dict:
    """The model and criterion configuration of a checkpoint (new ``cfg`` or old ``args``)."""
    cfg = state.get("cfg")
    if cfg is not None:
        return {section: _plain(cfg.get(section)) for section in COMPARED_SECTIONS}
    args = _plain(state.get("args")) or {}
    return {"args": args}  # a checkpoint of fairseq < 0.10: one flat namespace


def first_difference(a, b, prefix: str = "") -> str | None:
    """The dotted name of the first setting where ``a`` and ``b`` differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix.rstrip('.')} is {a!r} here but {b!r} there"


def check_compatible(paths: list[Path], states: list[dict]) -> None:
    """Refuse inputs of other systems or architectures, naming the file and the difference."""
    reference, last = states[-1], paths[-1]
    for path, state in zip(paths, states, strict=True):
        difference = first_difference(system_config(state), system_config(reference))
        if difference:
            raise AveragingError(
                f"{path} and {last} are checkpoints of different systems: {difference}; "
                "average checkpoints of one run only"
            )
        model, ref_model = state["model"], reference["model"]
        if model.keys() != ref_model.keys():
            differing = sorted(set(model) ^ set(ref_model))[:5]
            raise AveragingError(
                f"{path} has other parameters than {last} (e.g. {differing}); average "
                "checkpoints of one architecture only"
            )
        for name, tensor in model.items():
            if tensor.shape != ref_model[name].shape:
                raise AveragingError(
                    f"{name} is {tuple(tensor.shape)} in {path} but "
                    f"{tuple(ref_model[name].shape)} in {last}; average checkpoints of one "
                    "architecture only"
                )


def last_epoch_checkpoints(run_dir: Path, n: int) -> list[Path]:
    """The end-of-epoch checkpoints ``checkpointN.pt`` of the last ``n`` epochs in ``run_dir``
    (fewer when the run kept fewer), oldest first."""
    if not Path(run_dir).is_dir():
        raise AveragingError(f"{run_dir} is not a directory: give the run's --save-dir")
    epochs = sorted(
        (int(match[1]), path)
        for path in Path(run_dir).iterdir()
        if (match := EPOCH_CHECKPOINT.fullmatch(path.name)) and match[2] is None
    )
    if not epochs:
        raise AveragingError(
            f"{run_dir} has no epoch checkpoints (checkpointN.pt): train with --keep-last-epochs N "
            "and without --no-epoch-checkpoints"
        )
    return [path for _, path in epochs[-n:]]


def average_checkpoints(paths: list[Path]) -> dict:
    """The last checkpoint of ``paths`` with its model replaced by the mean of all models."""
    states = [load(Path(path)) for path in paths]
    check_compatible([Path(path) for path in paths], states)
    reference = states[-1]["model"]
    averaged = {}
    for name, tensor in reference.items():
        if tensor.is_floating_point():
            total = sum(state["model"][name].double() for state in states)
            averaged[name] = (total / len(states)).to(tensor.dtype)
        elif all(torch.equal(state["model"][name], tensor) for state in states):
            averaged[name] = tensor
        else:
            raise AveragingError(f"integer tensor {name} differs between the inputs")
    result = {key: value for key, value in states[-1].items() if key != "last_optimizer_state"}
    result["model"] = averaged
    return result
