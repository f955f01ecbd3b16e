"""Scores and training results in a line or a table, for ``examples/multi30k/experiments.sh`` and
``scripts/device-check.sh``.

    python -m fairseq_mmt_adv.recipes.summary score-line FILE.json
    python -m fairseq_mmt_adv.recipes.summary table RESULTS BEAM
    python -m fairseq_mmt_adv.recipes.summary best-bleu TRAIN_LOG

* ``score-line``: ``BLEU x METEOR y`` of one ``python -m fairseq_mmt_adv.scoring --json`` output;
* ``table``: one row per ``RESULTS/PAIR/RUN/seedsS/beamB.ensemble.SPLIT.json`` (the decode
  stage's layout): BLEU (tokenized, lowercased), METEOR and sacreBLEU;
* ``best-bleu``: ``N epochs, best valid BLEU x`` of a fairseq-train JSON log.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fairseq_mmt_adv.recipes.training_log import best_valid_bleu


def _meteor(scores: dict) -> str:
    return "-" if scores["meteor"] is None else f"{scores['meteor']:.2f}"


def score_line(path: str | Path) -> str:
    """``BLEU 38.54 METEOR 57.17`` (METEOR ``-`` when it was not scored)."""
    scores = json.loads(Path(path).read_text())
    return f"BLEU {scores['bleu_tok_lc']:.2f} METEOR {_meteor(scores)}"


def results_table(root: str | Path, beam: int | str) -> str:
    """The ensembles' scores under ``root`` for ``beam``, a row per run and split."""
    lines = [
        f"{'pair':6} {'run':28} {'seeds':12} {'split':6} {'BLEU':>6} {'METEOR':>7} {'sacreBLEU':>9}"
    ]
    for path in sorted(Path(root).glob(f"*/*/*/beam{beam}.ensemble.*.json")):
        scores = json.loads(path.read_text())
        split = path.name.split(".")[-2]
        pair, run, seeds = path.parts[-4:-1]
        lines.append(
            f"{pair:6} {run:28} {seeds.removeprefix('seeds'):12} {split:6} "
            f"{scores['bleu_tok_lc']:6.2f} {_meteor(scores):>7} {scores['bleu_sacre']:9.2f}"
        )
    return "\n".join(lines)


def best_bleu_line(log: str | Path) -> str:
    """``12 epochs, best valid BLEU 39.47`` (``nan`` when no epoch was validated)."""
    epochs, best = best_valid_bleu(log)
    return f"{epochs} epochs, best valid BLEU {float('nan') if best is None else best}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.recipes.summary", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("score-line", help="one scoring --json output").add_argument("json")
    table = commands.add_parser("table", help="the decoded ensembles' scores")
    table.add_argument("results")
    table.add_argument("beam")
    commands.add_parser("best-bleu", help="a training log's best BLEU").add_argument("log")
    args = parser.parse_args(argv)
    try:
        if args.command == "score-line":
            print(score_line(args.json))
        elif args.command == "table":
            print(results_table(args.results, args.beam))
        else:
            print(best_bleu_line(args.log))
    except KeyError as err:
        why = (
            f"a JSON file lacks the key {err}: give python -m fairseq_mmt_adv.scoring --json output"
        )
        parser.exit(1, f"{parser.prog} {args.command}: error: {why}\n")
    except (OSError, ValueError) as err:
        parser.exit(1, f"{parser.prog} {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
