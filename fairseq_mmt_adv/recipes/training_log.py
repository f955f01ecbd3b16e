"""fairseq-train's JSON training logs read into per-epoch and per-update records.

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

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"\|\s*(?P<tag>[\w.-]+)\s*\|\s*(?P<json>\{.*\})\s*$")


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


def best_valid_bleu(path: str | Path) -> tuple[int, float | None]:
    """The validated epochs of a training log and their best ``valid_bleu`` (None: none)."""
    scores = read_log(path).epoch_series("valid_bleu")[1]
    return len(scores), max(scores, default=None)
