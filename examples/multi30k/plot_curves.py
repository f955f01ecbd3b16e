"""Training curves from fairseq JSON logs: NLL, reconstruction MSE, critic, validation BLEU.

Usage::

    python examples/multi30k/plot_curves.py checkpoints/en-de/*/seed1/train.log -o curves.png \\
        [--labels baseline q-waae ...] [--updates]

Input: what ``fairseq-train --log-format json`` logs (train.sh writes it to SAVE_DIR/train.log
with ``--log-file``; fairseq-train's stdout works as well), read by
``fairseq_mmt_adv.recipes.training_log`` (its docstring describes the records).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fairseq_mmt_adv.recipes.training_log import RunLog, parse_log, read_log

__all__ = ["PANELS", "RunLog", "main", "parse_log", "plot", "read_log"]

# (title, y label, [(key, style, legend suffix)]) of the four panels; keys of epoch records.
PANELS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        "Translation NLL",
        "bits / token",
        [("train_nll_loss", "-", "train"), ("valid_nll_loss", "--", "valid")],
    ),
    (
        "Reconstruction ||v - v'||^2",
        "per sentence",
        [("train_recon_mse", "-", "train"), ("valid_recon_mse", "--", "valid")],
    ),
    (
        "Critic",
        "value",
        [("train_critic_loss", "-", "critic loss"), ("train_wasserstein", ":", "Wasserstein est.")],
    ),
    ("Validation BLEU", "BLEU", [("valid_bleu", "-", "")]),
]
# The per-update keys drawn under the epoch curves with --updates.
INNER_KEYS = {
    "train_nll_loss": "nll_loss",
    "train_recon_mse": "recon_mse",
    "train_critic_loss": "critic_loss",
    "train_wasserstein": "wasserstein",
}


def plot(runs: Sequence[RunLog], output: str | Path, updates: bool = False) -> Path:
    """One PNG with a panel per quantity of PANELS, the runs overlaid (a color per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, ylabel, curves) in zip(axes.flat, PANELS, strict=True):
        drawn = False
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            for key, style, suffix in curves:
                if updates and key in INNER_KEYS:
                    x, y = run.update_series(INNER_KEYS[key])
                    if x:
                        ax.plot(x, y, "-", color=color, alpha=0.25, linewidth=0.8)
                x, y = run.epoch_series(key)
                if not x:
                    continue
                label = f"{run.name} {suffix}".strip()
                ax.plot(x, y, style, color=color, marker="o", markersize=3, label=label)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="x-small")
        else:
            ax.text(0.5, 0.5, "not in these logs", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("logs", nargs="+", type=Path, help="fairseq-train JSON logs, one per run")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), help="PNG file")
    parser.add_argument("--labels", nargs="+", help="legend names of the runs (default: paths)")
    parser.add_argument(
        "--updates", action="store_true", help="also draw the per-update (train_inner) values"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.labels and len(args.labels) != len(args.logs):
        print(f"error: {len(args.logs)} logs but {len(args.labels)} labels", file=sys.stderr)
        return 2
    labels = args.labels or [None] * len(args.logs)
    try:
        runs = [read_log(path, label) for path, label in zip(args.logs, labels, strict=True)]
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for run in runs:
        if not run.epochs and not run.updates:
            print(f"warning: {run.name}: no JSON records (--log-format json?)", file=sys.stderr)
        else:
            print(f"{run.name}: {len(run.epochs)} epochs, {len(run.updates)} update records")
    try:
        output = plot(runs, args.output, updates=args.updates)
    except ImportError:
        print("error: plotting needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
