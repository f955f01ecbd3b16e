"""Training curves from fairseq JSON logs: NLL, reconstruction MSE, critic, validation BLEU.

Usage::

    python examples/multi30k/plot_curves.py checkpoints/en-de/*/seed1/train.log -o curves.png \\
        [--labels baseline q-waae ...] [--updates]

Input: what ``fairseq-train --log-format json`` logs (train.sh writes it to SAVE_DIR/train.log
with ``--log-file``; fairseq-train's stdout works as well). fairseq's ``JsonProgressBar`` logs
three kinds of records, their values formatted as strings (``"3.215"``):

- per update, every ``--log-interval`` updates (logger ``train_inner``): unprefixed keys,
  ``{"epoch": 1, "update": 0.286, "loss": "8.6", "nll_loss": "4.0", "recon_mse": "16.0", ...,
  "num_updates": "100", ...}``, where ``update`` is the fractional epoch;
- per epoch (logger ``train``): ``{"epoch": 1, "train_loss": ..., "train_nll_loss": ...,
  "train_recon_mse": ..., "train_critic_loss": ..., "train_wasserstein": ...}``;
- per validation (logger ``valid``): ``{"epoch": 1, "valid_loss": ..., "valid_nll_loss": ...,
  "valid_bleu": ..., "valid_best_bleu": ...}``.

Lines of the stdout format (``2024-05-01 12:00:00 | INFO | train | {...}``) and the bare JSON
lines of ``--log-file`` are both read; other lines are skipped. Repeated records (fairseq writes
some twice to the log file; a resumed run logs its last epochs again) are merged: the last one
wins. NLL is fairseq's, in bits (base 2) per target token.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"\|\s*(?P<tag>[\w.-]+)\s*\|\s*(?P<json>\{.*\})\s*$")

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


@dataclass
class RunLog:
    """The records of one training log."""

    name: str
    epochs: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> train_/valid_ keys
    updates: dict[int, dict[str, float]] = field(default_factory=dict)  # num_updates -> record

    def epoch_series(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of an epoch-level key such as ``valid_bleu``, in epoch order."""
        points = [(e, r[key]) for e, r in sorted(self.epochs.items()) if key in r]
        return [float(e) for e, _ in points], [v for _, v in points]

    def update_series(self, key: str) -> tuple[list[float], list[float]]:
        """(fractional epoch, value) of a per-update key such as ``nll_loss``, in update order."""
        records = [r for _, r in sorted(self.updates.items())]
        points = [(r["update"], r[key]) for r in records if key in r and "update" in r]
        return [x for x, _ in points], [v for _, v in points]


def _numbers(record: dict) -> dict[str, float]:
    """The numeric values of a record (fairseq writes them as strings)."""
    out = {}
    for key, value in record.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def parse_record(line: str) -> tuple[str | None, dict[str, float]] | None:
    """(logger tag or None, numeric values) of one log line holding a JSON record, else None."""
    line = line.strip()
    match = _LINE.search(line)
    tag, text = (match["tag"], match["json"]) if match else (None, line)
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "epoch" not in record:
        return None
    return tag, _numbers(record)


def parse_log(lines: Iterable[str], name: str = "run") -> RunLog:
    """Collect the per-update and per-epoch records of fairseq JSON log lines."""
    run = RunLog(name)
    for line in lines:
        parsed = parse_record(line)
        if parsed is None:
            continue
        tag, record = parsed
        per_update = tag == "train_inner" or (tag is None and "num_updates" in record)
        if per_update:
            if "num_updates" in record:
                run.updates[int(record["num_updates"])] = record
        else:
            run.epochs.setdefault(int(record["epoch"]), {}).update(record)
    return run


def read_log(path: str | Path, name: str | None = None) -> RunLog:
    """``parse_log`` of a file; the name defaults to the run's directories (``NAME/seedN``)."""
    path = Path(path)
    if name is None:
        parts = path.parent.parts[-2:] if path.name == "train.log" else (path.stem,)
        name = "/".join(parts) or path.stem
    with open(path, encoding="utf-8", errors="replace") as lines:
        return parse_log(lines, name)


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
