"""The main job on the embedded demo corpus: train, decode and score every system on CPU.

Generates the grounded demo corpus (``fairseq_mmt_adv.demo_corpus``), binarizes it with stock
``fairseq-preprocess``, trains each system with stock ``fairseq-train --user-dir
fairseq_mmt_adv``, decodes the test split with ``fairseq-generate`` (beam 5) and prints one
table: BLEU, METEOR (exact+stem unless a full METEOR 1.5 jar is given by ``METEOR_JAR``) and the
accuracy on the scene-ambiguous words, which only the image disambiguates.

    python scripts/run_demo.py [--out demo-run] [--epochs 12] [--systems text-only,ctx-mul]
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fairseq_mmt_adv import demo_translation
from fairseq_mmt_adv import systems as mmt_systems
from fairseq_mmt_adv.demo_corpus import ambiguous_word_accuracy
from fairseq_mmt_adv.recipes.fairseq_steps import (
    USER_DIR,
    DemoCorpus,
    fairseq_cli,
    prepare_demo_corpus,
    run_logged,
)
from fairseq_mmt_adv.scoring import parse_fairseq_generate, read_lines, score

# The cGRU family's systems but the "no v" ablations of the reconstruction modes: text-only,
# ctx-mul, mse, q-waae, g-wgan.
SYSTEMS = [name for name in mmt_systems.names("cgru") if not name.endswith("-nov")]
# The demo's own settings beside each system's flags: the paper's critic (1024, 512) would dwarf
# cgru_mmt_small (hidden 128) and the CPU budget.
DEMO_FLAGS = {"g-wgan": ["--critic-hidden", "256,128"]}


def train_and_decode(corpus: DemoCorpus, out: Path, system: str, args: argparse.Namespace) -> dict:
    """Train one system, decode the test split, return its scores and wall time."""
    save_dir = out / system
    save_dir.mkdir(parents=True, exist_ok=True)
    task = [
        "--user-dir",
        USER_DIR,
        "--task",
        "multimodal_translation",
        "--visual-features",
        str(corpus.features),
    ]
    start = time.time()
    run_logged(
        [
            fairseq_cli("train"),
            str(corpus.bin),
            *task,
            "--arch",
            "cgru_mmt_small",
            "--optimizer",
            "adam",
            "--lr",
            str(args.lr),
            "--clip-norm",
            "1",
            "--batch-size",
            "32",
            "--max-epoch",
            str(args.epochs),
            "--best-checkpoint-metric",
            "nll_loss",
            "--no-epoch-checkpoints",
            "--save-dir",
            str(save_dir),
            "--seed",
            str(args.seed),
            "--cpu",
            "--no-progress-bar",
            "--log-format",
            "simple",
            "--log-interval",
            "50",
            *mmt_systems.flags(system),
            *DEMO_FLAGS.get(system, []),
        ],
        save_dir / "train.log",
        args.threads,
    )
    train_seconds = time.time() - start
    generated = save_dir / "generate-test.txt"
    run_logged(
        [
            fairseq_cli("generate"),
            str(corpus.bin),
            *task,
            "--gen-subset",
            "test",
            "--path",
            str(save_dir / "checkpoint_best.pt"),
            "--beam",
            "5",
            "--batch-size",
            "64",
            "--cpu",
        ],
        generated,
        args.threads,
    )
    hypotheses, _ = parse_fairseq_generate(generated)
    references = read_lines(corpus.root / "raw" / "test.de")
    scores = score(hypotheses, references, "de", meteor_jar=os.environ.get("METEOR_JAR"))
    accuracy = ambiguous_word_accuracy(hypotheses, read_lines(corpus.root / "raw" / "test.ambig"))
    return {
        "system": system,
        "bleu": scores.bleu_tok_lc,
        "meteor": scores.meteor,
        "meteor_name": scores.meteor_name,
        "ambiguous_accuracy": 100 * accuracy,
        "train_seconds": train_seconds,
    }


def format_table(results: list[dict]) -> str:
    meteor_name = results[0]["meteor_name"]
    lines = [f"{'system':<10} {'BLEU':>6} {meteor_name:>24} {'ambig. acc %':>13} {'train s':>8}"]
    for r in results:
        meteor = "n/a" if r["meteor"] is None else f"{r['meteor']:.2f}"
        lines.append(
            f"{r['system']:<10} {r['bleu']:6.2f} {meteor:>24} "
            f"{r['ambiguous_accuracy']:13.1f} {r['train_seconds']:8.0f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-run"), help="working directory")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="systems trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    args = parser.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {list(SYSTEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = prepare_demo_corpus(args.out / "corpus", seed=args.seed, threads=args.threads)
    systems = args.systems.split(",")
    print(f"training {', '.join(systems)} on the demo corpus ({args.epochs} epochs each, CPU)")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda s: train_and_decode(corpus, args.out, s, args), systems))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"(test split, beam 5; details in {args.out}/results.json and {args.out}/<system>/)")
    print(demo_translation.report(args.out, systems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
