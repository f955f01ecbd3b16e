"""Scores of one system trained with several seeds: each seed, their mean +- std, the ensemble.

Usage::

    python examples/multi30k/multi_seed.py --data data-bin/en-de --splits test test2 \\
        --checkpoints checkpoints/en-de/q-waae_lr0.2_la0.2/seed{1,2,3,4,5} [--beam 12] \\
        [--output-dir DIR --reuse] [--json scores.json] [--meteor-jar meteor-1.5.jar]

Every checkpoint (a ``.pt`` file, or a directory holding ``--checkpoint-name``, by default
``checkpoint_best.pt``) is decoded alone, and all of them together as an ensemble
(``--path a.pt:b.pt:...``), with ``fairseq-generate --beam B --remove-bpe`` on each split. The
outputs are scored against the tokenized references ``DATA/text/{split}.{lang}`` written by
``scripts/prepare-multi30k.sh`` with ``fairseq_mmt_adv.evaluation.scoring``: BLEU is the tokenized,
lowercased BLEU of Multi30K papers (``bleu_tok_lc``), METEOR is METEOR 1.5 when a jar is given
(``--meteor-jar`` or ``METEOR_JAR``), else unavailable ("-"). The standard deviation is the sample
standard deviation (n - 1) over seeds.

Outputs go to ``--output-dir`` (default: a temporary directory) as ``beam{B}.{label}.{split}.txt``
(label: the checkpoint directory's name, e.g. ``seed1``) and ``beam{B}.ensemble.{split}.txt``;
with ``--reuse`` a complete output already there is scored again instead of decoded again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


try:  # the package's scoring imports neither fairseq nor torch
    from fairseq_mmt_adv.evaluation.scoring import (
        ScoringError,
        parse_fairseq_generate,
        read_lines,
        score,
    )
except ImportError:  # a Python without the plugin installed, run from this checkout
    sys.path.insert(0, str(REPO))
    from fairseq_mmt_adv.evaluation.scoring import (
        ScoringError,
        parse_fairseq_generate,
        read_lines,
        score,
    )

METRICS = ("BLEU", "METEOR")
ENSEMBLE = "ensemble"

Metrics = dict[str, float | None]  # metric name -> score (None: unavailable)
RunScores = dict[str, Metrics]  # split -> metrics


class DecodeError(RuntimeError):
    """fairseq-generate failed or its output does not fit the references."""


# ---------------------------------------------------------------- aggregation (no fairseq needed)


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (n - 1) and count of the values that are not None.

    The mean is None without values; the standard deviation is None with fewer than two.
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None, 0
    std = statistics.stdev(present) if len(present) > 1 else None
    return statistics.fmean(present), std, len(present)


def aggregate(
    per_seed: Mapping[str, RunScores], splits: Sequence[str], metrics: Sequence[str] = METRICS
) -> dict[str, dict[str, tuple[float | None, float | None, int]]]:
    """``{split: {metric: (mean, std, n)}}`` across the runs of ``per_seed`` (label -> scores)."""
    return {
        split: {
            metric: mean_std([runs.get(split, {}).get(metric) for runs in per_seed.values()])
            for metric in metrics
        }
        for split in splits
    }


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _mean_cell(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_table(
    per_seed: Mapping[str, RunScores],
    ensemble: RunScores | None,
    splits: Sequence[str],
    split_names: Mapping[str, str] | None = None,
    metrics: Sequence[str] = METRICS,
    title: str = "",
) -> str:
    """A text table: a row per seed, the mean +- std row and the ensemble row; a column per
    split and metric."""
    split_names = split_names or {}
    stats = aggregate(per_seed, splits, metrics)
    header = ["run"] + [f"{split_names.get(s, s)} {m}" for s in splits for m in metrics]
    rows = [
        [label] + [_cell(scores.get(s, {}).get(m)) for s in splits for m in metrics]
        for label, scores in per_seed.items()
    ]
    rows.append(
        [f"mean ± std ({len(per_seed)})"]
        + [_mean_cell(*stats[s][m]) for s in splits for m in metrics]
    )
    if ensemble is not None:
        rows.append(
            [f"ensemble ({len(per_seed)})"]
            + [_cell(ensemble.get(s, {}).get(m)) for s in splits for m in metrics]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [title] if title else []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report_json(
    per_seed: Mapping[str, RunScores],
    ensemble: RunScores | None,
    splits: Sequence[str],
    metrics: Sequence[str] = METRICS,
) -> dict:
    """Everything in one JSON-friendly dict."""
    stats = aggregate(per_seed, splits, metrics)
    return {
        "seeds": dict(per_seed),
        "mean": {s: {m: stats[s][m][0] for m in metrics} for s in splits},
        "std": {s: {m: stats[s][m][1] for m in metrics} for s in splits},
        "ensemble": ensemble,
    }


# ---------------------------------------------------------------- decoding and scoring


def checkpoint_path(entry: str | Path, name: str = "checkpoint_best.pt") -> Path:
    """A checkpoint file as given, or ``entry/name`` for a directory."""
    path = Path(entry)
    return path / name if path.is_dir() or path.suffix != ".pt" else path


def run_labels(entries: Sequence[str | Path]) -> list[str]:
    """Short unique labels: the directory name (``seed1``), else more of the path."""
    paths = [Path(e).with_suffix("") if Path(e).suffix == ".pt" else Path(e) for e in entries]
    for depth in (1, 2):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(e) for e in entries]


def file_label(label: str) -> str:
    """A run label made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def generate_command(
    data: str | Path,
    checkpoints: Sequence[str | Path],
    split: str,
    beam: int = 12,
    batch_size: int = 64,
    features: str | Path | None = None,
    fairseq_generate: str = "fairseq-generate",
    user_dir: str | Path = REPO / "fairseq_mmt_adv",
    extra: Sequence[str] = (),
) -> list[str]:
    """The fairseq-generate command line; several checkpoints make an ensemble."""
    command = [
        fairseq_generate,
        str(data),
        "--user-dir",
        str(user_dir),
        "--task",
        "multimodal_translation",
        "--path",
        ":".join(str(c) for c in checkpoints),
        "--gen-subset",
        split,
        "--beam",
        str(beam),
        "--remove-bpe",
        "--batch-size",
        str(batch_size),
    ]
    if features is not None:
        command += ["--visual-features", str(features)]
    return command + list(extra)


def complete_output(path: Path, n_references: int) -> bool:
    """Whether ``path`` is a fairseq-generate output with one hypothesis per reference."""
    try:
        hyps, _ = parse_fairseq_generate(path)
    except (OSError, ScoringError):
        return False
    return len(hyps) == n_references


def decode(command: Sequence[str], output: Path) -> Path:
    """Run fairseq-generate; stdout goes to ``output``, stderr to ``output`` with ``.log``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".tmp")
    log = output.with_suffix(".log")
    with open(partial, "w", encoding="utf-8") as out, open(log, "w", encoding="utf-8") as err:
        done = subprocess.run(list(command), stdout=out, stderr=err, check=False)
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise DecodeError(
            f"fairseq-generate exited with {done.returncode} (log {log}): " + " | ".join(tail)
        )
    partial.replace(output)
    return output


def score_output(
    output: Path, references: Path, lang: str, meteor_jar: str | None = None
) -> tuple[Metrics, str]:
    """BLEU (tokenized, lowercased) and METEOR of a fairseq-generate output (BPE removed), and
    the name of the METEOR variant that scored it (e.g. "METEOR 1.5 (exact+stem)")."""
    hyps, _ = parse_fairseq_generate(output)
    refs = read_lines(references)
    if len(hyps) != len(refs):
        raise DecodeError(f"{output} has {len(hyps)} hypotheses, {references} {len(refs)} lines")
    result = score(hyps, refs, lang, meteor_jar=meteor_jar)
    return {"BLEU": result.bleu_tok_lc, "METEOR": result.meteor}, result.meteor_name


def target_language(data: Path, source: str = "en") -> str:
    """The target language of a prepared data directory, from its ``dict.{lang}.txt`` files."""
    langs = sorted(p.name.split(".")[1] for p in data.glob("dict.*.txt"))
    targets = [lang for lang in langs if lang != source]
    if len(targets) != 1:
        raise DecodeError(f"cannot tell the target language from {data}: give --target-lang")
    return targets[0]


def split_names(data: Path) -> dict[str, str]:
    """fairseq split -> Multi30K split name, from ``DATA/splits.tsv`` when it exists."""
    table = data / "splits.tsv"
    if not table.is_file():
        return {}
    rows = [line.split("\t") for line in read_lines(table)[1:]]
    return {row[0]: row[1] for row in rows if len(row) >= 2}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Decode and score each seed's checkpoint and their ensemble; print per-seed "
        "scores, mean +- std and the ensemble's scores.",
    )
    parser.add_argument("--data", type=Path, required=True, help="prepared data directory")
    parser.add_argument("--features", help="feature directory (default: the one in checkpoints)")
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        help="checkpoint files, or directories holding --checkpoint-name; one per seed",
    )
    parser.add_argument("--checkpoint-name", default="checkpoint_best.pt")
    parser.add_argument("--splits", nargs="+", default=["test"], help="fairseq splits to decode")
    parser.add_argument("--beam", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--target-lang", help="default: from DATA/dict.*.txt")
    parser.add_argument("--references-dir", type=Path, help="default: DATA/text")
    parser.add_argument("--output-dir", type=Path, help="default: a temporary directory")
    parser.add_argument("--reuse", action="store_true", help="score complete outputs again")
    parser.add_argument("--no-ensemble", action="store_true", help="decode the seeds only")
    parser.add_argument("--meteor-jar", default=os.environ.get("METEOR_JAR"))
    parser.add_argument(
        "--fairseq-generate",
        default=str(Path(sys.executable).parent / "fairseq-generate"),
        help="fairseq-generate executable (default: next to this Python)",
    )
    parser.add_argument(
        "--generate-args",
        default="",
        help="more fairseq-generate flags as one string, e.g. --generate-args='--cpu'",
    )
    parser.add_argument("--name", default="", help="title of the table")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        lang = args.target_lang or target_language(args.data)
        references = args.references_dir or args.data / "text"
        checkpoints = [checkpoint_path(c, args.checkpoint_name) for c in args.checkpoints]
        missing = [str(c) for c in checkpoints if not c.is_file()]
        if missing:
            raise DecodeError(f"missing checkpoints: {', '.join(missing)}")
        labels = run_labels(args.checkpoints)
        jobs = [(lab, [c]) for lab, c in zip(labels, checkpoints, strict=True)]
        if len(checkpoints) > 1 and not args.no_ensemble:
            jobs.append((ENSEMBLE, checkpoints))
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = args.output_dir or Path(scratch)
            results: dict[str, RunScores] = {label: {} for label, _ in jobs}
            meteor_names: set[str] = set()
            for split in args.splits:
                refs = references / f"{split}.{lang}"
                n_refs = len(read_lines(refs))
                for label, paths in jobs:
                    output = out_dir / f"beam{args.beam}.{file_label(label)}.{split}.txt"
                    if not (args.reuse and complete_output(output, n_refs)):
                        print(f"decoding {split} with {label} (beam {args.beam})", file=sys.stderr)
                        decode(
                            generate_command(
                                args.data,
                                paths,
                                split,
                                args.beam,
                                args.batch_size,
                                args.features,
                                args.fairseq_generate,
                                extra=shlex.split(args.generate_args),
                            ),
                            output,
                        )
                    results[label][split], meteor_name = score_output(
                        output, refs, lang, args.meteor_jar
                    )
                    meteor_names.add(meteor_name)
    except (DecodeError, ScoringError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ensemble = results.pop(ENSEMBLE, None)
    title = f"{args.name or 'system'}: {len(results)} seeds, beam {args.beam}, BLEU tok-lc"
    if args.meteor_jar:
        title += ", METEOR = " + " / ".join(sorted(meteor_names))
    else:
        title += ", METEOR (no METEOR_JAR: unavailable)"
    print(format_table(results, ensemble, args.splits, split_names(args.data), title=title))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report_json(results, ensemble, args.splits), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
