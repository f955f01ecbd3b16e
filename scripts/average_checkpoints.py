"""Average the parameters of fairseq checkpoints of one run into a single model.

    python scripts/average_checkpoints.py --inputs run/epoch9.pt run/epoch10.pt run/epoch11.pt \
        --output run/checkpoint_avg.pt

The usual use is the last few epochs of a run: the average is still one model, of the same
architecture, and ``fairseq-generate --path run/checkpoint_avg.pt`` decodes it like any
checkpoint. Floating-point tensors of the model are averaged (summed in float64, stored in their
own dtype); other tensors must be equal in every input. The rest of the checkpoint
(configuration, the criterion's G and D, training history) is the last input's; the optimizer
state is left out, so the result decodes but does not resume training.
"""

import argparse
import sys
from pathlib import Path

import torch

import fairseq_mmt_adv.checkpoint_compat  # noqa: F401  (lets torch >= 2.6 load fairseq checkpoints)


def load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"average_checkpoints: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu")
    if "model" not in state:
        raise SystemExit(f"average_checkpoints: {path} is not a fairseq checkpoint (no 'model')")
    return state


def average_models(paths: list[Path]) -> dict:
    """The last checkpoint of ``paths`` with its model replaced by the mean of all models."""
    states = [load(path) for path in paths]
    reference = states[-1]["model"]
    for path, state in zip(paths, states, strict=True):
        model = state["model"]
        if model.keys() != reference.keys():
            differing = sorted(set(model) ^ set(reference))[:5]
            raise SystemExit(
                f"average_checkpoints: {path} has other parameters than {paths[-1]} "
                f"(e.g. {differing}); average checkpoints of one architecture only"
            )
        for name, tensor in model.items():
            if tensor.shape != reference[name].shape:
                raise SystemExit(
                    f"average_checkpoints: {name} is {tuple(tensor.shape)} in {path} but "
                    f"{tuple(reference[name].shape)} in {paths[-1]}; average checkpoints of one "
                    "architecture only"
                )
    averaged = {}
    for name, tensor in reference.items():
        if tensor.is_floating_point():
            total = sum(state["model"][name].double() for state in states)
            averaged[name] = (total / len(states)).to(tensor.dtype)
        elif all(torch.equal(state["model"][name], tensor) for state in states):
            averaged[name] = tensor
        else:
            raise SystemExit(f"average_checkpoints: integer tensor {name} differs between inputs")
    result = {key: value for key, value in states[-1].items() if key != "last_optimizer_state"}
    result["model"] = averaged
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", nargs="+", type=Path, required=True, help="checkpoints")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("--inputs needs at least two checkpoints")
    if args.output.resolve() in {path.resolve() for path in args.inputs}:
        parser.error("--output must not be one of --inputs")
    state = average_models(args.inputs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    print(f"averaged {len(args.inputs)} checkpoints into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
