"""Training and decoding speed of fairseq's ``lstm`` and ``transformer`` and of the plugin's
systems (``cgru_mmt`` and ``transformer_mmt_tiny`` variants), side by side.

Every system runs through stock ``fairseq-train`` / ``fairseq-generate`` on the same data and
machine, each family at one model size (``fairseq_mmt_adv.recipes.benchmarks``): throughput is
read from fairseq's own logs (``wps`` = target tokens/s, ``ups`` = updates/s, past a warm-up
interval), peak memory from the process (max RSS) or from CUDA. Ratios to the first system
(``lstm`` by default) are the headline, since absolute times on shared machines are noisy.

    python scripts/benchmark.py                       # demo corpus, CPU
    python scripts/benchmark.py --data DIR --features DIR --device cuda
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fairseq_mmt_adv.recipes.benchmarks import SYSTEMS, task_flags, train_flags
from fairseq_mmt_adv.recipes.fairseq_steps import fairseq_cli, prepare_demo_corpus, run_logged


def run_measured(command: list[str], log: Path, threads: int) -> tuple[str, float]:
    """Run a command with its output in ``log``; return the output and the peak RSS (MiB)."""
    usage = run_logged(command, log, threads)
    return log.read_text(errors="replace"), usage.peak_mib


def inner_stat(output: str, key: str) -> float:
    """Mean of ``key`` over fairseq's train_inner log lines, the first (warm-up) one excluded."""
    values = [float(v) for v in re.findall(rf"\| train_inner \|.*?\b{key}=([\d.]+)", output)]
    if len(values) < 2:
        raise RuntimeError(f"too few train_inner lines to measure {key}: raise --updates")
    return sum(values[1:]) / len(values[1:])


def device_flags(device: str) -> list[str]:
    return ["--cpu"] if device == "cpu" else ["--bf16"] if device == "cuda-bf16" else []


def benchmark_training(system: str, args: argparse.Namespace, save_dir: Path) -> dict:
    shutil.rmtree(save_dir, ignore_errors=True)  # else fairseq-train resumes a finished run
    interval = max(args.updates // 4, 1)
    output, rss = run_measured(
        [
            fairseq_cli("train"),
            *train_flags(system, args.data, args.features),
            "--batch-size",
            str(args.batch_size),
            "--max-update",
            str(args.updates),
            "--log-interval",
            str(interval),
            "--log-format",
            "simple",
            "--no-progress-bar",
            "--save-dir",
            str(save_dir),
            "--no-epoch-checkpoints",
            "--disable-validation",
            "--seed",
            "1",
            *device_flags(args.device),
        ],
        save_dir.with_name(f"{system}.train.log"),
        args.threads,
    )
    return {
        "tokens/s": inner_stat(output, "wps"),
        "updates/s": inner_stat(output, "ups"),
        "peak MiB": rss,
    }


def benchmark_decoding(
    system: str, args: argparse.Namespace, save_dir: Path, beam: int
) -> tuple[float, float]:
    """Sentences/s of beam search, and output tokens per sentence (equal lengths = fair).

    With ``--decode-length N`` every hypothesis is N tokens long (``--min-len N --max-len-a 0
    --max-len-b N``): briefly trained models stop at lengths of their own, and a system whose
    hypotheses run longer would look slower for it.
    """
    length = args.decode_length
    forced = ["--min-len", str(length), "--max-len-a", "0", "--max-len-b", str(length)]
    output, _ = run_measured(
        [
            fairseq_cli("generate"),
            *task_flags(system, args.data, args.features),
            "--path",
            str(save_dir / "checkpoint_last.pt"),
            "--gen-subset",
            args.gen_subset,
            "--beam",
            str(beam),
            *(forced if length else []),
            "--batch-size",
            str(args.decode_batch_size),
            *device_flags(args.device),
        ],
        save_dir.with_name(f"{system}.beam{beam}.log"),
        args.threads,
    )
    match = re.search(
        r"Translated ([\d,]+) sentences \(([\d,]+) tokens\).*?\(([\d.]+) sentences/s", output
    )
    if not match:
        raise RuntimeError(f"no throughput line in fairseq-generate output:\n{output[-2000:]}")
    sentences, tokens = (int(match.group(i).replace(",", "")) for i in (1, 2))
    return float(match.group(3)), tokens / sentences


def format_table(rows: list[dict], beams: Sequence[int] = (5, 12)) -> str:
    reference = rows[0]
    speeds = [f"beam {beam} sent/s" for beam in beams]
    columns = ["tokens/s", "updates/s", "peak MiB", *speeds, "out tok/sent"]
    ratios = {"train": "tokens/s", **{f"beam{beam}": f"beam {beam} sent/s" for beam in beams}}
    width = max(15, 1 + max(len(row["system"]) for row in rows))
    lines = [
        f"{'system':<{width}}"
        + "".join(f"{c:>16}" for c in columns)
        + "".join(f"{name + ' x ' + reference['system']:>16}" for name in ratios)
    ]
    for row in rows:
        cells = "".join(f"{row[c]:16.1f}" for c in columns)
        cells += "".join(f"{row[c] / reference[c]:16.2f}" for c in ratios.values())
        lines.append(f"{row['system']:<{width}}{cells}")
    baseline = next((r for r in rows if r["system"] == "cgru"), None)
    if baseline is not None:
        for row in rows:
            if row["system"].startswith("cgru+"):
                overhead = baseline["updates/s"] / row["updates/s"] - 1
                lines.append(
                    f"overhead per update of {row['system']} vs cgru: {100 * overhead:+.1f}%"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="binarized data (default: the demo corpus)")
    parser.add_argument("--features", type=Path, help="feature directory for --data")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--device", choices=["cpu", "cuda", "cuda-bf16"], default="cpu")
    parser.add_argument(
        "--updates",
        type=int,
        default=200,
        help="training updates per system (enough for sensible output lengths when decoding)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--decode-batch-size", type=int, default=64)
    parser.add_argument("--gen-subset", default="test")
    parser.add_argument(
        "--beams", default="5,12", help="comma-separated beam sizes to time decoding with"
    )
    parser.add_argument(
        "--decode-length",
        type=int,
        default=16,
        metavar="N",
        help="force every hypothesis to N tokens, for equal work per system "
        "(0: the models' own lengths)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure every system this many times, interleaved; report medians",
    )
    parser.add_argument("--work-dir", type=Path, help="keep corpus and checkpoints here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    beams = args.beams.split(",")
    if not all(beam.isdigit() and int(beam) > 0 for beam in beams):
        parser.error(f"--beams takes positive integers, e.g. 5,12, not {args.beams!r}")
    args.beams = [int(beam) for beam in beams]
    if args.decode_length < 0:
        parser.error("--decode-length must be 0 or more")
    if (args.data is None) != (args.features is None):
        parser.error("--data and --features go together")
    unknown = sorted(set(args.systems.split(",")) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    return args


def measure_system(system: str, args: argparse.Namespace, save_dir: Path) -> dict:
    """Training throughput and memory, then the decoding speed of one system at each beam."""
    row = {"system": system, **benchmark_training(system, args, save_dir)}
    for beam in args.beams:
        speed, length = benchmark_decoding(system, args, save_dir, beam)
        row[f"beam {beam} sent/s"], row["out tok/sent"] = speed, length
    return row


def median_rows(runs: list[dict]) -> dict:
    """Per-column median of a system's repeated measurements."""
    return {
        key: runs[0][key] if key == "system" else statistics.median(r[key] for r in runs)
        for key in runs[0]
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mmt-benchmark-"))
    if args.data is None:
        corpus = prepare_demo_corpus(work / "corpus", feature_dim=2048, threads=args.threads)
        args.data, args.features = corpus.bin, corpus.features
    systems = args.systems.split(",")
    runs: dict[str, list[dict]] = {system: [] for system in systems}
    for repeat in range(args.repeats):  # interleaved, so that slow drifts hit every system
        for system in systems:
            row = measure_system(system, args, work / "checkpoints" / system)
            runs[system].append(row)
            print(f"[{repeat + 1}/{args.repeats}] {system}: {row}", flush=True)
    lengths = f"{args.decode_length} tokens" if args.decode_length else "own lengths"
    print(
        f"\ndevice {args.device}, {args.threads} threads, batch {args.batch_size}, "
        f"{args.updates} updates, hypotheses of {lengths}, median of {args.repeats} runs, "
        f"data {args.data}"
    )
    print(format_table([median_rows(runs[system]) for system in systems], args.beams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
