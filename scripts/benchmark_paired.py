"""Paired speed comparison of fairseq's ``lstm`` and ``transformer`` and of the plugin's systems
(``cgru_mmt`` and ``transformer_mmt_tiny`` variants), in one process.

``scripts/benchmark.py`` times whole ``fairseq-train`` / ``fairseq-generate`` runs one after
another, so on a shared machine differences of a few percent drown in the noise between runs.
Here every system is built in one process with fairseq's own task, model, criterion, optimizer
and beam-search generator, and the systems take turns on the same batches, in an order that
rotates from round to round:

* training: one full update per system per round (``task.train_step``: forward, backward and,
  in the adversarial modes, the critic's own updates; then clipping and the optimizer step);
* decoding: one batch of beam search per system per round (``task.inference_step``), every
  hypothesis forced to ``--decode-length`` tokens (``min_len = max_len``): untrained models
  would otherwise stop at different lengths, and equal work per step is what is compared.

A system's figure is the median over rounds of its time divided by the reference system's
time in the same round; slow drifts of the machine then cancel.

    python scripts/benchmark_paired.py                   # demo corpus, 2048-d features, CPU
    python scripts/benchmark_paired.py --systems cgru,cgru+q-waae,cgru+g-wgan --reference cgru
    python scripts/benchmark_paired.py --data DIR --features DIR --device cuda
    python scripts/benchmark_paired.py --systems transformer,gated --reference transformer
    python scripts/benchmark_paired.py --systems cgru --profile 12  # where the time goes

``--profile N`` adds, after the measured rounds, one profiled training update and one profiled
beam search per system, and prints their N costliest operators (``torch.profiler``, self time).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
from fairseq import optim, options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from fairseq_mmt_adv.recipes.benchmarks import SYSTEMS, train_flags
from fairseq_mmt_adv.recipes.fairseq_steps import prepare_demo_corpus

Measure = Callable[[int], float]  # round -> seconds


class System:
    """A system as ``fairseq-train`` / ``fairseq-generate`` would build it from its flags."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        argv = [
            *train_flags(name, args.data, args.features),
            "--seed",
            "1",
            *(["--cpu"] if args.device == "cpu" else []),
        ]
        cfg = convert_namespace_to_omegaconf(
            options.parse_args_and_arch(options.get_training_parser(), argv)
        )
        utils.set_torch_seed(1)
        self.device = args.device
        self.task = tasks.setup_task(cfg.task)
        for split in ("train", args.gen_subset):
            self.task.load_dataset(split)
        self.model = self.task.build_model(cfg.model).to(args.device)
        self.criterion = self.task.build_criterion(cfg.criterion).to(args.device)
        params = [p for m in (self.model, self.criterion) for p in m.parameters()]
        self.optimizer = optim.build_optimizer(cfg.optimizer, params)
        self.generator = self.task.build_generator(
            [self.model],
            SimpleNamespace(
                beam=args.beam,
                max_len_a=0,
                max_len_b=args.decode_length,
                min_len=args.decode_length,
            ),
        )

    def batch(self, split: str, indices: list[int]) -> dict:
        dataset = self.task.dataset(split)
        sample = dataset.collater([dataset[i] for i in indices])
        return utils.move_to_cuda(sample) if self.device == "cuda" else sample

    def timed(self, work: Callable[[], object]) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def train_update(self, sample: dict, update: int) -> float:
        """Seconds for one training update on ``sample``."""

        def update_step() -> None:
            self.model.train()
            self.criterion.train()
            self.optimizer.zero_grad()
            self.task.train_step(sample, self.model, self.criterion, self.optimizer, update)
            self.optimizer.clip_grad_norm(1.0)
            self.optimizer.step()

        return self.timed(update_step)

    def decode(self, sample: dict) -> float:
        """Seconds for beam search over ``sample``."""
        self.model.eval()
        models = [self.model]
        with torch.no_grad():
            return self.timed(lambda: self.task.inference_step(self.generator, models, sample))


def index_batches(system: System, split: str, batch_size: int, count: int) -> list[list[int]]:
    """The sentence indices of the first ``count`` batches fairseq would build for ``split``."""
    iterator = system.task.get_batch_iterator(
        system.task.dataset(split), max_sentences=batch_size, seed=1
    )
    batches = [list(map(int, batch)) for batch in iterator.frozen_batches][:count]
    if not batches:
        raise ValueError(f"no batches in split {split!r}")
    return batches


def profile_table(title: str, work: Callable[[], object], rows: int, device: str) -> str:
    """The ``rows`` operators with the largest self time (on ``device``) while ``work()`` runs
    once."""
    with torch.profiler.profile() as profiler:
        work()
    sort_by = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    return f"{title}\n{profiler.key_averages().table(sort_by=sort_by, row_limit=rows)}"


def paired_rounds(measures: dict[str, Measure], rounds: int, warmup: int) -> dict[str, list]:
    """Each system's seconds per measured round; the order of the systems rotates."""
    names = list(measures)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = measures[name](r)
            if r >= warmup:
                times[name].append(seconds)
    return times


def summarize(title: str, times: dict[str, list[float]], reference: str) -> str:
    """Median ms per round and the median of per-round time ratios to ``reference``, with
    quartiles; speed-up = reference time / system time."""
    width = max(16, 2 + max(map(len, times)))
    lines = [
        title,
        f"{'system':<{width}}{'median ms':>11}{'time x ' + reference:>22}"
        f"{'quartiles':>18}{'speed-up':>10}",
    ]
    for name, values in times.items():
        ratios = [t / b for t, b in zip(values, times[reference], strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        lines.append(
            f"{name:<{width}}{1000 * statistics.median(values):11.1f}{median:22.3f}"
            f"{f'[{q1:.3f}, {q3:.3f}]':>18}{1 / median:10.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="binarized data (default: the demo corpus)")
    parser.add_argument("--features", type=Path, help="feature directory for --data")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    parser.add_argument("--reference", default="lstm", help="the system ratios are taken to")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (>= 2)")
    parser.add_argument("--warmup", type=int, default=2, help="rounds left out first")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch")
    parser.add_argument("--decode-batch-size", type=int, default=64)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument(
        "--decode-length",
        type=int,
        default=16,
        help="tokens of every hypothesis before its end of sentence",
    )
    parser.add_argument("--gen-subset", default="test")
    parser.add_argument("--no-decode", action="store_true", help="time training only")
    parser.add_argument("--no-train", action="store_true", help="time decoding only")
    parser.add_argument(
        "--times-json", type=Path, help="write every system's seconds per round to this file"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work-dir", type=Path, help="keep the demo corpus here")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="print the N costliest operators of one update / beam search",
    )
    args = parser.parse_args(argv)
    if (args.data is None) != (args.features is None):
        parser.error("--data and --features go together")
    if args.no_train and args.no_decode:
        parser.error("--no-train and --no-decode leave nothing to time")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    if args.reference not in systems:
        parser.error(f"--reference {args.reference} is not among --systems")
    return args


def time_training(systems: dict[str, System], args: argparse.Namespace) -> dict[str, list]:
    """Paired training updates; the table and, with ``--profile``, each system's profile."""
    first = next(iter(systems.values()))
    train = index_batches(first, "train", args.batch_size, args.warmup + args.rounds)
    samples = {n: [s.batch("train", b) for b in train] for n, s in systems.items()}
    times = paired_rounds(
        {
            n: (lambda r, n=n: systems[n].train_update(samples[n][r % len(train)], r))
            for n in systems
        },
        args.rounds,
        args.warmup,
    )
    title = f"\ntraining updates, batch {args.batch_size}; {args.header}"
    print(summarize(title, times, args.reference), flush=True)
    for name, system in systems.items() if args.profile else ():
        update = args.warmup + args.rounds
        print(
            profile_table(
                f"\nprofile of one training update: {name}",
                lambda s=system, x=samples[name][0], u=update: s.train_update(x, u),
                args.profile,
                args.device,
            )
        )
    return times


def time_decoding(systems: dict[str, System], args: argparse.Namespace) -> dict[str, list]:
    """Paired beam searches; the table and, with ``--profile``, each system's profile."""
    first = next(iter(systems.values()))
    test = index_batches(first, args.gen_subset, args.decode_batch_size, 10**6)
    samples = {n: [s.batch(args.gen_subset, b) for b in test] for n, s in systems.items()}
    times = paired_rounds(
        {n: (lambda r, n=n: systems[n].decode(samples[n][r % len(test)])) for n in systems},
        args.rounds,
        args.warmup,
    )
    title = (
        f"\nbeam {args.beam} decoding, batch {args.decode_batch_size} ({args.gen_subset}); "
        f"{args.header}"
    )
    print(summarize(title, times, args.reference), flush=True)
    for name, system in systems.items() if args.profile else ():
        print(
            profile_table(
                f"\nprofile of one beam search: {name}",
                lambda s=system, x=samples[name][0]: s.decode(x),
                args.profile,
                args.device,
            )
        )
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data is None:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="mmt-benchmark-"))
        corpus = prepare_demo_corpus(work / "corpus", feature_dim=2048, threads=args.threads)
        args.data, args.features = corpus.bin, corpus.features
    systems = {name: System(name, args) for name in args.systems.split(",")}
    args.header = (
        f"{args.device}, {args.threads} threads, {args.rounds} rounds after "
        f"{args.warmup} warm-up, data {args.data}"
    )
    times = {}
    if not args.no_train:
        times["training"] = time_training(systems, args)
    if not args.no_decode:
        times[f"beam {args.beam}"] = time_decoding(systems, args)
    if args.times_json:
        args.times_json.write_text(json.dumps(times, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
