"""Average the parameters of fairseq checkpoints of one run into a single model.

    python scripts/average_checkpoints.py --inputs run/epoch9.pt run/epoch10.pt run/epoch11.pt \
        --output run/checkpoint_avg.pt

What is averaged and what is refused: ``fairseq_mmt_adv/checkpoint_average.py``.
"""

import argparse
import sys
from pathlib import Path

import torch

from fairseq_mmt_adv.checkpoint_average import AveragingError, average_checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", nargs="+", type=Path, required=True, help="checkpoints")
    parser.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("--inputs needs at least two checkpoints")
    if args.output.resolve() in {path.resolve() for path in args.inputs}:
        parser.error("--output must not be one of --inputs")
    try:
        state = average_checkpoints(args.inputs)
    except AveragingError as error:
        print(f"average_checkpoints: error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    print(f"averaged {len(args.inputs)} checkpoints into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
