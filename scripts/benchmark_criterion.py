"""Per-update cost of each reconstruction mode against the NLL-only cgru_mmt, paired in one process.

``scripts/benchmark.py`` times whole ``fairseq-train`` runs one after another, so on a shared
machine a few percent of overhead drowns in the noise between runs. Here every system (the
``label_smoothed_cross_entropy`` baseline and ``adversarial_reconstruction`` in each mode) is
built in one process with fairseq's own task, model, criterion and optimizer, and they take
turns on the same batches: round r times one full update of each system (``task.train_step``:
forward, backward, the critic's own updates; then clipping and the optimizer step). The overhead
of a mode is the median over rounds of its time divided by the baseline's time in that round.

    python scripts/benchmark_criterion.py                    # demo corpus, 2048-d features, CPU
    python scripts/benchmark_criterion.py --data DIR --features DIR --device cuda
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmark import prepare_demo_corpus
from fairseq import optim, options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import fairseq_mmt_adv

USER_DIR = str(Path(fairseq_mmt_adv.__file__).parent)
BASELINE = "cgru"
MODES = ("mse", "q-waae", "g-wgan")


def build_system(system: str, args: argparse.Namespace, seed: int = 1):
    """(task, model, criterion, optimizer) of ``cgru`` or ``cgru+MODE``, as fairseq-train builds
    them from the paper's flags."""
    criterion = ["--criterion", "label_smoothed_cross_entropy"]
    if system != BASELINE:
        criterion = ["--criterion", "adversarial_reconstruction",
                     "--reconstruction", system.removeprefix("cgru+")]  # fmt: skip
    argv = [str(args.data), "--user-dir", USER_DIR, "--task", "multimodal_translation",
            "--visual-features", str(args.features), "--arch", args.arch, *criterion,
            "--optimizer", "adam", "--lr", "4e-4", "--clip-norm", "1", "--seed", str(seed),
            *(["--cpu"] if args.device == "cpu" else [])]  # fmt: skip
    cfg = convert_namespace_to_omegaconf(
        options.parse_args_and_arch(options.get_training_parser(), argv)
    )
    utils.set_torch_seed(seed)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    criterion_module = task.build_criterion(cfg.criterion)
    model.to(args.device)
    criterion_module.to(args.device)
    params = [p for m in (model, criterion_module) for p in m.parameters() if p.requires_grad]
    return task, model, criterion_module, optim.build_optimizer(cfg.optimizer, params)


def first_batches(task, count: int, batch_size: int, device: str) -> list[dict]:
    """The first ``count`` training batches of ``batch_size`` sentences, on ``device``."""
    iterator = task.get_batch_iterator(
        task.dataset("train"), max_sentences=batch_size, seed=1
    ).next_epoch_itr(shuffle=True)
    batches = [utils.move_to_cuda(s) if device == "cuda" else s for s in iterator]
    if len(batches) < count:
        raise ValueError(f"the training set has {len(batches)} batches, fewer than {count}")
    return batches[:count]


def timed_update(system, sample: dict, update: int, device: str) -> float:
    """Seconds for one training update of ``system`` on ``sample``."""
    task, model, criterion, optimizer = system
    model.train()
    criterion.train()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.zero_grad()
    task.train_step(sample, model, criterion, optimizer, update)
    optimizer.clip_grad_norm(1.0)
    optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(systems: dict, batches: list[dict], rounds: int, warmup: int, device: str) -> dict:
    """Per system: the list of update times of the measured rounds (warm-up rounds left out).
    The order of the systems rotates from round to round."""
    names = list(systems)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        sample = batches[r % len(batches)]
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            seconds = timed_update(systems[name], sample, r, device)
            if r >= warmup:
                times[name].append(seconds)
    return times


def summarize(times: dict[str, list[float]]) -> str:
    """Median ms per update, and each mode's median paired overhead with its quartiles."""
    baseline = times[BASELINE]
    lines = [f"{'system':<14}{'median ms/update':>18}{'overhead vs cgru':>18}{'quartiles':>22}"]
    for name, values in times.items():
        row = f"{name:<14}{1000 * statistics.median(values):18.1f}"
        if name != BASELINE:
            ratios = [100 * (t / b - 1) for t, b in zip(values, baseline, strict=True)]
            q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
            row += f"{median:+17.1f}%{f'[{q1:+.1f}%, {q3:+.1f}%]':>22}"
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="binarized data (default: the demo corpus)")
    parser.add_argument("--features", type=Path, help="feature directory for --data")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--arch", default="cgru_mmt")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds (>= 2)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds left out first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work-dir", type=Path, help="keep the demo corpus here")
    args = parser.parse_args(argv)
    if (args.data is None) != (args.features is None):
        parser.error("--data and --features go together")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data is None:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="mmt-benchmark-"))
        args.data, args.features = prepare_demo_corpus(work, args.threads)
    names = [BASELINE] + [f"cgru+{mode}" for mode in args.modes.split(",")]
    systems = {name: build_system(name, args) for name in names}
    batches = first_batches(systems[BASELINE][0], min(args.rounds, 20), args.batch_size,
                            args.device)  # fmt: skip
    times = measure(systems, batches, args.rounds, args.warmup, args.device)
    print(f"\n{args.arch} on {args.device}, {args.threads} threads, batch {args.batch_size}, "
          f"{args.rounds} rounds after {args.warmup} warm-up, data {args.data}")  # fmt: skip
    print(summarize(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
