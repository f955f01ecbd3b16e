"""Average the parameters of fairseq checkpoints of one run into a single model.

    python scripts/average_checkpoints.py --inputs run/epoch9.pt run/epoch10.pt run/epoch11.pt \
        --output run/checkpoint_avg.pt
    python scripts/average_checkpoints.py --last-epochs 10 --run-dir run \
        --output run/checkpoint_avg.pt      # run/checkpointN.pt of the last 10 epochs

What is averaged and what is refused: ``fairseq_mmt_adv/recipes/checkpoint_average.py``.
"""

import argparse
import sys
from pathlib import Path

import torch

from fairseq_mmt_adv.recipes.checkpoint_average import (
    AveragingError,
    average_checkpoints,
    last_epoch_checkpoints,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--inputs", nargs="+", type=Path, help="checkpoints")
    inputs.add_argument("--run-dir", type=Path, help="a run's --save-dir (with --last-epochs)")
    parser.add_argument("--last-epochs", type=int, help="average its last N epoch checkpoints")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = parser.parse_args(argv)
    if (args.run_dir is None) != (args.last_epochs is None):
        parser.error("--run-dir and --last-epochs go together")
    if args.last_epochs is not None and args.last_epochs < 1:
        parser.error(f"--last-epochs must be a positive integer, not {args.last_epochs}")
    if args.inputs is not None and len(args.inputs) < 2:
        parser.error("--inputs needs at least two checkpoints")
    try:
        if args.run_dir is not None:
            args.inputs = last_epoch_checkpoints(args.run_dir, args.last_epochs)
        if args.output.resolve() in {path.resolve() for path in args.inputs}:
            parser.error("--output must not be one of --inputs")
        state = average_checkpoints(args.inputs)
    except AveragingError as error:
        print(f"average_checkpoints: error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    names = " ".join(path.name for path in args.inputs)
    print(f"averaged {len(args.inputs)} checkpoints ({names}) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
