"""The main job on the embedded demo corpus: train, decode and score every system on CPU.

Generates the grounded demo corpus (``recipes.demo_corpus``), binarizes it with stock
``fairseq-preprocess``, trains each system with stock ``fairseq-train --user-dir
fairseq_mmt_adv``, decodes the test split with ``fairseq-generate`` (beam 5) and prints one
table: BLEU, METEOR (exact+stem unless a full METEOR 1.5 jar is given by ``METEOR_JAR``), the
accuracy on the scene-ambiguous words, which only the image disambiguates, and the accuracy on
the corpus's contrastive set in CoMMuTE's layout (``fairseq-mmt-evaluate contrastive``: 50 % for
a model that ignores the image).

The systems come from ``recipes.systems``, whose fusions are the fusion registry's: the cGRU
family's on ``cgru_mmt_small`` and the Transformer family's on ``transformer_mmt_tiny`` with
2 + 2 layers (:data:`TRAINING` holds each family's demo settings). The gated fusion also runs
fine-tuned from the text-only Transformer (``finetuned-gated``: ``--finetune-from-model``, the
fusion starting at its identity), and for both gated runs the table gives the updates each needs
to get 95 % of the validation split's ambiguous words right (``recipes.learning_curve``).

    python scripts/run_demo.py [--out demo-run] [--epochs 12] [--transformer-epochs 3]
        [--systems text-only,ctx-mul,gated] [--no-transformer] [--train-sentences 4000]
        [--curve-interval 10]
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fairseq_mmt_adv.evaluation.scoring import parse_fairseq_generate, read_lines, score
from fairseq_mmt_adv.recipes import demo_translation
from fairseq_mmt_adv.recipes import systems as mmt_systems
from fairseq_mmt_adv.recipes.demo_corpus import DEFAULT_SIZES, ambiguous_word_accuracy
from fairseq_mmt_adv.recipes.fairseq_steps import (
    USER_DIR,
    DemoCorpus,
    fairseq_cli,
    prepare_demo_corpus,
    run_logged,
)

# The cGRU family's systems but the "no v" ablations of the reconstruction modes: text-only,
# ctx-mul, mse, q-waae, g-wgan (and those of any fusion registered since).
CGRU_SYSTEMS = [name for name in mmt_systems.names("cgru") if not name.endswith("-nov")]
# Each fusion of the Transformer family alone (text-only, gated (Wu et al., 2021),
# selective-attn, any registered since), and the gated one with q-waae.
TRANSFORMER_SYSTEMS = [*mmt_systems.alone("transformer"), "gated+q-waae", "finetuned-gated"]
# The systems whose learning curve is measured: how many updates the gated fusion needs to get
# the scene-dependent words right, from scratch and fine-tuned from the text-only model.
CURVE_SYSTEMS = ("gated", "finetuned-gated")
SYSTEMS = CGRU_SYSTEMS + TRANSFORMER_SYSTEMS
# The demo's own settings beside each system's flags: the paper's critic (1024, 512) would dwarf
# cgru_mmt_small (hidden 128) and the CPU budget.
DEMO_FLAGS = {"g-wgan": ["--critic-hidden", "256,128"]}
# Each family's model size and optimization on the demo corpus (4000 sentences, batch 32). The
# Transformer: the tiny preset with 2 + 2 layers, Adam with a short warm-up of the inverse square
# root schedule; it learns the corpus in 2 epochs (250 updates), the gated one with the image.
TRAINING = {
    "cgru": ["--arch", "cgru_mmt_small", "--optimizer", "adam", "--clip-norm", "1"],
    "transformer": [
        *("--arch", "transformer_mmt_tiny", "--encoder-layers", "2", "--decoder-layers", "2"),
        *("--dropout", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)"),
        *("--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100"),
        *("--warmup-init-lr", "1e-7", "--clip-norm", "1"),
    ],
}


CHECKPOINT = "checkpoint_best.pt"  # what each system decodes, and fine-tuning starts from


def family(system: str) -> str:
    return mmt_systems.get(system).family


def epochs_and_lr(system: str, args: argparse.Namespace) -> tuple[int, float]:
    if family(system) == "transformer":
        return args.transformer_epochs, args.transformer_lr
    return args.epochs, args.lr


def train_command(corpus: DemoCorpus, save_dir: Path, system: str, args: argparse.Namespace):
    """fairseq-train's command line for one system of the demo."""
    epochs, lr = epochs_and_lr(system, args)
    return [
        fairseq_cli("train"),
        str(corpus.bin),
        *task_flags(corpus),
        *TRAINING[family(system)],
        *("--lr", str(lr), "--batch-size", "32", "--max-epoch", str(epochs)),
        *("--best-checkpoint-metric", "nll_loss", "--no-epoch-checkpoints"),
        *("--save-dir", str(save_dir), "--seed", str(args.seed), "--cpu", "--no-progress-bar"),
        *("--log-format", "simple", "--log-interval", "50"),
        *mmt_systems.flags(system),
        *DEMO_FLAGS.get(system, []),
        *start_flags(save_dir.parent, system),
        *curve_flags(system, args),
    ]


def start_flags(out: Path, system: str) -> list[str]:
    """``--finetune-from-model`` the best checkpoint of the system it starts from, if any."""
    start = mmt_systems.get(system).start_from
    return [] if start is None else ["--finetune-from-model", str(out / start / CHECKPOINT)]


def curve_flags(system: str, args: argparse.Namespace) -> list[str]:
    """A checkpoint every ``--curve-interval`` updates for the systems of CURVE_SYSTEMS."""
    if system not in CURVE_SYSTEMS:
        return []
    return ["--save-interval-updates", str(args.curve_interval), "--keep-interval-updates", "-1"]


def task_flags(corpus: DemoCorpus) -> list[str]:
    task = ["--task", "multimodal_translation", "--visual-features", str(corpus.features)]
    return ["--user-dir", USER_DIR, *task]


def train_and_decode(corpus: DemoCorpus, out: Path, system: str, args: argparse.Namespace) -> dict:
    """Train one system, decode the test split, return its scores and wall time."""
    save_dir = out / system
    save_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    command = train_command(corpus, save_dir, system, args)
    run_logged(command, save_dir / "train.log", args.threads)
    train_seconds = time.time() - start
    updates_to_learn = learning_curve(corpus, save_dir, args) if system in CURVE_SYSTEMS else None
    generated = save_dir / "generate-test.txt"
    run_logged(
        [
            *(fairseq_cli("generate"), str(corpus.bin), *task_flags(corpus)),
            *("--gen-subset", "test", "--path", str(save_dir / CHECKPOINT)),
            *("--beam", "5", "--batch-size", "64", "--cpu"),
        ],
        generated,
        args.threads,
    )
    hypotheses, _ = parse_fairseq_generate(generated)
    references = read_lines(corpus.root / "raw" / "test.de")
    scores = score(hypotheses, references, "de", meteor_jar=os.environ.get("METEOR_JAR"))
    accuracy = ambiguous_word_accuracy(hypotheses, read_lines(corpus.root / "raw" / "test.ambig"))
    contrastive = contrastive_accuracy(corpus, save_dir / CHECKPOINT, args.threads)
    return {
        "system": system,
        "bleu": scores.bleu_tok_lc,
        "meteor": scores.meteor,
        "meteor_name": scores.meteor_name,
        "ambiguous_accuracy": 100 * accuracy,
        "contrastive_accuracy": contrastive,
        "updates_to_learn": updates_to_learn,
        "train_seconds": train_seconds,
    }


def learning_curve(corpus: DemoCorpus, save_dir: Path, args: argparse.Namespace) -> int | None:
    """``recipes.learning_curve`` on the run's interval checkpoints (then deleted): the updates
    after which 95 % of the validation split's ambiguous words come out right."""
    result = save_dir / "learning-curve.json"
    run_logged(
        [
            *(sys.executable, "-m", "fairseq_mmt_adv.recipes.learning_curve", str(save_dir)),
            *("--data", str(corpus.bin), "--raw", str(corpus.root / "raw")),
            *("--json", str(result)),
        ],
        save_dir / "learning-curve.log",
        args.threads,
    )
    for checkpoint in save_dir.glob("checkpoint_*_*.pt"):
        checkpoint.unlink()
    return json.loads(result.read_text())["updates_to_learn"]


def contrastive_accuracy(corpus: DemoCorpus, checkpoint: Path, threads: int) -> float:
    """``fairseq-mmt-evaluate contrastive`` on the corpus's CoMMuTE-layout set: accuracy, %."""
    commute, result = corpus.root / "commute", checkpoint.parent / "contrastive.json"
    run_logged(
        [
            *(sys.executable, "-m", "fairseq_mmt_adv.evaluation.cli", "contrastive"),
            *(str(corpus.bin), "--path", str(checkpoint), "--cpu", "--json", str(result)),
            *("--commute", str(commute), "--target-lang", "de"),
            *("--features", str(commute / "features.npy")),
        ],
        checkpoint.parent / "contrastive.log",
        threads,
    )
    return float(json.loads(result.read_text())["accuracy"])


def format_table(results: list[dict]) -> str:
    meteor_name = results[0]["meteor_name"]
    width = max(10, *(len(r["system"]) for r in results))
    lines = [
        f"{'system':<{width}} {'BLEU':>6} {meteor_name:>24} {'ambig. acc %':>13} "
        f"{'contrastive %':>14} {'updates to 95%':>15} {'train s':>8}"
    ]
    for r in results:
        meteor = "n/a" if r["meteor"] is None else f"{r['meteor']:.2f}"
        learned = r.get("updates_to_learn")
        learned = "-" if r["system"] not in CURVE_SYSTEMS else str(learned or "never")
        lines.append(
            f"{r['system']:<{width}} {r['bleu']:6.2f} {meteor:>24} "
            f"{r['ambiguous_accuracy']:13.1f} {r['contrastive_accuracy']:14.1f} "
            f"{learned:>15} {r['train_seconds']:8.0f}"
        )
    return "\n".join(lines)


def table_notes(results: list[dict], args: argparse.Namespace) -> list[str]:
    """What the columns and the fine-tuned rows mean."""
    notes = [f"(test split, beam 5; details in {args.out}/results.json and {args.out}/<system>/)"]
    if any(r["system"] in CURVE_SYSTEMS for r in results):
        notes.append(
            "(updates to 95%: the first of its checkpoints, one every "
            f"{args.curve_interval} updates, that gets 95 % of the valid split's ambiguous words "
            "right, greedy; counted from the system's own start)"
        )
    for r in results:
        start = mmt_systems.get(r["system"]).start_from
        if start is not None:
            notes.append(f"({r['system']}: fine-tuned from {start}'s {CHECKPOINT})")
    return notes


def run_all(corpus: DemoCorpus, systems: list[str], args: argparse.Namespace) -> list[dict]:
    """Train and score every system, ``--jobs`` at once; a fine-tuned system waits for the
    system it starts from, which is queued before it."""
    # the longer Transformer runs start first, so that the jobs end close together
    order = sorted(
        systems,
        key=lambda s: (family(s) != "transformer", mmt_systems.get(s).start_from is not None),
    )
    futures = {}

    def job(system: str) -> dict:
        start = mmt_systems.get(system).start_from
        if start is not None:
            futures[start].result()
        return train_and_decode(corpus, args.out, system, args)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for system in order:
            futures[system] = pool.submit(job, system)
        return [futures[system].result() for system in systems]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-run"), help="working directory")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} (all)")
    parser.add_argument("--no-transformer", action="store_true", help="the cGRU systems only")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the cGRU systems")
    parser.add_argument("--lr", type=float, default=0.003, help="learning rate of the cGRU systems")
    parser.add_argument(
        "--transformer-epochs", type=int, default=3, help="epochs of the Transformer systems"
    )
    parser.add_argument(
        "--transformer-lr",
        type=float,
        default=0.002,
        help="peak learning rate of the Transformer systems (after the warm-up)",
    )
    parser.add_argument(
        "--train-sentences",
        type=int,
        default=DEFAULT_SIZES["train"],
        help="training sentences of the generated corpus (fewer: a quicker, rougher demo)",
    )
    parser.add_argument(
        "--curve-interval",
        type=int,
        default=10,
        help=f"updates between the checkpoints of {', '.join(CURVE_SYSTEMS)} whose ambiguous "
        "words are scored (the updates-to-95%% column)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="systems trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    args = parser.parse_args(argv)
    if args.train_sentences < 1:
        parser.error("--train-sentences must be at least 1")
    if args.systems and args.no_transformer:
        parser.error("--systems and --no-transformer exclude each other: name the systems")
    default = CGRU_SYSTEMS if args.no_transformer else SYSTEMS
    args.systems = args.systems.split(",") if args.systems else default
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {list(SYSTEMS)}")
    for system in args.systems:
        start = mmt_systems.get(system).start_from
        if start is not None and start not in args.systems:
            parser.error(f"{system} is fine-tuned from {start}: add {start} to --systems")
    if args.curve_interval < 1:
        parser.error("--curve-interval must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": args.train_sentences}
    corpus = prepare_demo_corpus(args.out / "corpus", args.seed, threads=args.threads, sizes=sizes)
    systems = args.systems
    print(
        f"training {', '.join(systems)} on the demo corpus (epochs: cGRU {args.epochs}, "
        f"Transformer {args.transformer_epochs}; CPU)"
    )
    results = run_all(corpus, systems, args)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print("\n".join(table_notes(results, args)))
    print(demo_translation.report(args.out, systems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
