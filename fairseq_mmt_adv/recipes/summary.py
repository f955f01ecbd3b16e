"""Scores and training results in a line or a table, for ``examples/multi30k/experiments.sh`` and
``scripts/device-check.sh``.

    python -m fairseq_mmt_adv.recipes.summary score-line FILE.json
    python -m fairseq_mmt_adv.recipes.summary table RESULTS BEAM [BEAM ...] [--data PAIR=DIR ...]
    python -m fairseq_mmt_adv.recipes.summary best-bleu TRAIN_LOG

* ``score-line``: ``BLEU x METEOR y`` of one ``python -m fairseq_mmt_adv.evaluation.scoring --json``
  output;
* ``table``: one row per ``RESULTS/PAIR/RUN/seedsS/beamB.ensemble.SPLIT.json`` (the decode
  stage's layout) of the given beams: the ensemble's BLEU (tokenized, lowercased), METEOR and
  sacreBLEU; the seeds' single-model BLEU as mean +- std (``beamB.seeds.json`` of
  ``multi_seed.py``, the seeds stage); and the comparison with the baseline of the run's family
  (``fairseq_mmt_adv.recipes.systems.BASELINES``: ``baseline`` for the cGRU systems,
  ``transformer-text-only`` for the Transformer ones) on the same split and beam: the BLEU
  difference of the ensembles and its p-value by paired bootstrap resampling
  (``fairseq_mmt_adv.evaluation.significance``), which needs the references
  ``DIR/text/SPLIT.LANG`` of ``--data PAIR=DIR``; and whether the run uses the image, from the
  evaluate stage's ``fairseq-mmt-evaluate`` outputs beside the ensemble's, one per seed
  (``n/a`` without them): the CoMMuTE accuracy (``seedN.contrastive.commute.json``) with its 95 %
  bootstrap interval, and the BLEU lost with other sentences' images
  (``beamB.seedN.incongruent.SPLIT.json``) with its p-value (docs/EVALUATION.md);
* ``best-bleu``: ``N epochs, best valid BLEU x`` of a fairseq-train JSON log.
"""

import argparse
import json
import statistics
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairseq_mmt_adv.evaluation.contrastive import interval
from fairseq_mmt_adv.evaluation.scoring import ScoringError
from fairseq_mmt_adv.evaluation.significance import N_SAMPLES, paired_bootstrap_files
from fairseq_mmt_adv.recipes import systems
from fairseq_mmt_adv.recipes.training_log import best_valid_bleu


def _meteor(scores: dict) -> str:
    return "-" if scores["meteor"] is None else f"{scores['meteor']:.2f}"


def score_line(path: str | Path) -> str:
    """``BLEU 38.54 METEOR 57.17`` (METEOR ``-`` when it was not scored)."""
    scores = json.loads(Path(path).read_text())
    return f"BLEU {scores['bleu_tok_lc']:.2f} METEOR {_meteor(scores)}"


@dataclass(frozen=True)
class Decoded:
    """One scored ensemble output: ``RESULTS/PAIR/RUN/seedsS/beamB.ensemble.SPLIT.json``."""

    path: Path
    beam: str

    @property
    def pair(self) -> str:
        return self.path.parts[-4]

    @property
    def run(self) -> str:
        return self.path.parts[-3]

    @property
    def seeds(self) -> str:
        return self.path.parts[-2].removeprefix("seeds")

    @property
    def split(self) -> str:
        return self.path.name.split(".")[-2]

    @property
    def output(self) -> Path:
        """The fairseq-generate output that was scored."""
        return self.path.with_suffix(".txt")

    def system(self) -> systems.System | None:
        """The run's system (its name up to the first ``_``: weights follow), None if unknown."""
        try:
            return systems.get(self.run.split("_")[0])
        except systems.SystemSpecError:
            return None

    def is_baseline(self) -> bool:
        system = self.system()
        return system is not None and system.name == systems.BASELINES[system.family]

    def seed_bleu(self) -> str:
        """Mean +- std of the seeds' single models (multi_seed.py's JSON), ``-`` without it."""
        path = self.path.with_name(f"beam{self.beam}.seeds.json")
        if not path.is_file():
            return "-"
        report = json.loads(path.read_text())
        mean, std = report["mean"][self.split]["BLEU"], report["std"][self.split]["BLEU"]
        if mean is None:
            return "-"
        return f"{mean:.2f}" if std is None else f"{mean:.2f}±{std:.2f}"


def contrastive_json(directory: Path, seed: str) -> Path:
    """The evaluate stage's ``fairseq-mmt-evaluate contrastive`` output of one seed (CoMMuTE)."""
    return directory / f"seed{seed}.contrastive.commute.json"


def incongruent_json(directory: Path, beam: str, seed: str, split: str) -> Path:
    """The evaluate stage's ``fairseq-mmt-evaluate incongruent`` output of one seed and split."""
    return directory / f"beam{beam}.seed{seed}.incongruent.{split}.json"


def read_evaluations(paths: Sequence[Path], keys: Sequence[str]) -> list[dict]:
    """The JSON outputs among ``paths`` that exist (a seed not evaluated is left out)."""
    found = []
    for path in paths:
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        missing = [key for key in keys if key not in result]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}: give fairseq-mmt-evaluate --json output "
                "(examples/multi30k/experiments.sh --stage evaluate)"
            )
        found.append(result)
    return found


def spread(values: Sequence[float], sign: str = "") -> str:
    """``mean`` of one value, ``mean±std`` (sample std) of several."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{sign}.2f}"
    return f"{mean:{sign}.2f}±{statistics.stdev(values):.2f}"


def seeds_note(found: Sequence, row: Decoded) -> str:
    """``(k/n)`` when only k of the row's n seeds were evaluated."""
    total = len(row.seeds.split("-"))
    return "" if len(found) == total else f"({len(found)}/{total})"


def contrastive_cell(row: Decoded) -> str:
    """The CoMMuTE accuracy over the seeds (mean, ±std) with the 95 % bootstrap interval of
    that mean over the lines, ``n/a`` without the evaluate stage's output."""
    paths = [contrastive_json(row.path.parent, seed) for seed in row.seeds.split("-")]
    found = read_evaluations(paths, ["accuracy", "lines"])
    if not found:
        return "n/a"
    counts = {len(result["lines"]) for result in found}
    if len(counts) != 1:
        raise ValueError(
            f"the CoMMuTE outputs of {row.path.parent} have different numbers of lines "
            f"({sorted(counts)}): evaluate every seed on the same set"
        )
    right = np.array([[line["right"] for line in result["lines"]] for result in found], float)
    low, high = interval(right.mean(axis=0))
    accuracy = spread([result["accuracy"] for result in found])
    return f"{accuracy}[{low:.1f}-{high:.1f}]{seeds_note(found, row)}"


def incongruent_cells(row: Decoded) -> list[str]:
    """The BLEU lost with incongruent images (congruent minus incongruent; mean, ±std over the
    seeds) and the largest of the seeds' p-values; ``n/a`` without the evaluate stage's output."""
    paths = [
        incongruent_json(row.path.parent, row.beam, seed, row.split)
        for seed in row.seeds.split("-")
    ]
    found = read_evaluations(paths, ["delta", "p_value"])
    if not found:
        return ["n/a", "n/a"]
    delta = spread([result["delta"] for result in found], sign="+")
    p_value = max(result["p_value"] for result in found)
    return [delta + seeds_note(found, row), f"{p_value:.3f}"]


def decoded_outputs(root: str | Path, beams: Sequence[int | str]) -> list[Decoded]:
    return [
        Decoded(path, str(beam))
        for beam in beams
        for path in sorted(Path(root).glob(f"*/*/*/beam{beam}.ensemble.*.json"))
    ]


def baseline_of(row: Decoded, rows: Sequence[Decoded]) -> Decoded | None:
    """The family baseline's output for the same pair, split and beam (the same seeds if there,
    else the most seeds); None for a baseline itself, an unknown run or no baseline output."""
    system = row.system()
    if system is None or row.is_baseline():
        return None
    candidates = [
        other
        for other in rows
        if (other.pair, other.split, other.beam) == (row.pair, row.split, row.beam)
        and other.is_baseline()
        and other.system().family == system.family
    ]
    same = [other for other in candidates if other.seeds == row.seeds]
    ranked = same or sorted(candidates, key=lambda other: -len(other.seeds.split("-")))
    return ranked[0] if ranked else None


def comparison(row: Decoded, rows: Sequence[Decoded], data: Mapping[str, Path]) -> list[str]:
    """The cells ``vs``, ``dBLEU`` and ``p`` of a row (``-`` where there is nothing to test)."""
    baseline = baseline_of(row, rows)
    if baseline is None or row.pair not in data:
        return ["-", "-", "-"]
    name = baseline.run if baseline.seeds == row.seeds else f"{baseline.run}({baseline.seeds})"
    references = data[row.pair] / "text" / f"{row.split}.{row.pair.split('-')[-1]}"
    result = paired_bootstrap_files(baseline.output, row.output, references)
    return [name, f"{result.difference:+.2f}", f"{result.p_value:.3f}"]


TABLE_NOTES = (
    "BLEU, METEOR, sacreBLEU: the ensemble of the seeds; seeds BLEU: their single models, "
    "mean ± sample std (examples/multi30k/multi_seed.py).",
    "dBLEU: the ensemble's BLEU minus that of its family's baseline (vs) on the same split; p: its "
    f"two-sided p-value by paired bootstrap resampling (sacreBLEU, {N_SAMPLES} resamples, "
    "tokenized lowercased BLEU). p < 0.05: a gain unlikely to be test-set noise; the spread "
    "over seeds is the other noise to weigh. '-': a baseline itself, a run of no known system, or "
    "no baseline output for that pair, split and beam.",
    "CoMMuTE: contrastive accuracy, % (50 for a model that ignores the image), mean ± std over "
    "the seeds, [95 % bootstrap interval over the lines]; dIncong: BLEU with the own images "
    "minus BLEU with other sentences' images, mean ± std over the seeds; pIncong: the largest "
    "p-value of that drop (paired bootstrap), seeds and permutations; (k/n): k of n seeds "
    "evaluated; n/a: no evaluate stage output (docs/EVALUATION.md).",
)


def results_table(
    root: str | Path,
    beam: int | str | Sequence[int | str],
    data: Mapping[str, Path] | None = None,
) -> str:
    """The ensembles' scores under ``root`` for the beam(s), a row per run and split, compared
    with their family's baseline when ``data`` (pair -> prepared data directory) has the pair."""
    beams = [beam] if isinstance(beam, int | str) else list(beam)
    rows = decoded_outputs(root, beams)
    data = data or {}
    header = ["pair", "run", "seeds", "split", "beam", "BLEU", "METEOR", "sacreBLEU"]
    header += ["seeds BLEU", "vs", "dBLEU", "p", "CoMMuTE", "dIncong", "pIncong"]
    table = [header]
    for row in rows:
        scores = json.loads(row.path.read_text())
        table.append(
            [row.pair, row.run, row.seeds, row.split, row.beam, f"{scores['bleu_tok_lc']:.2f}"]
            + [_meteor(scores), f"{scores['bleu_sacre']:.2f}", row.seed_bleu()]
            + comparison(row, rows, data)
            + [contrastive_cell(row), *incongruent_cells(row)]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table]
    notes = list(TABLE_NOTES)
    missing = sorted({row.pair for row in rows} - set(data))
    if missing:
        notes.append(f"no p-values for {', '.join(missing)}: give --data PAIR=DIR (references)")
    notes = [textwrap.fill(note, 100, subsequent_indent="  ") for note in notes]
    return "\n".join([line.rstrip() for line in lines] + [""] + notes)


def best_bleu_line(log: str | Path) -> str:
    """``12 epochs, best valid BLEU 39.47`` (``nan`` when no epoch was validated)."""
    epochs, best = best_valid_bleu(log)
    return f"{epochs} epochs, best valid BLEU {float('nan') if best is None else best}"


def data_dirs(given: Sequence[str]) -> dict[str, Path]:
    """``--data PAIR=DIR`` values as {pair: DIR}."""
    result = {}
    for value in given:
        pair, sep, directory = value.partition("=")
        if not (sep and pair and directory):
            raise ValueError(f"--data takes PAIR=DIR (e.g. en-de=data-bin/en-de), not {value!r}")
        result[pair] = Path(directory)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.recipes.summary", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("score-line", help="one scoring --json output").add_argument("json")
    table = commands.add_parser("table", help="the decoded ensembles' scores")
    table.add_argument("results")
    table.add_argument("beams", nargs="+", metavar="BEAM")
    table.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="PAIR=DIR",
        help="prepared data of a pair (its references DIR/text/SPLIT.LANG), for the p-values",
    )
    commands.add_parser("best-bleu", help="a training log's best BLEU").add_argument("log")
    args = parser.parse_args(argv)
    try:
        if args.command == "score-line":
            print(score_line(args.json))
        elif args.command == "table":
            print(results_table(args.results, args.beams, data_dirs(args.data)))
        else:
            print(best_bleu_line(args.log))
    except KeyError as err:
        why = (
            f"a JSON file lacks the key {err}: give python -m "
            "fairseq_mmt_adv.evaluation.scoring --json output"
        )
        parser.exit(1, f"{parser.prog} {args.command}: error: {why}\n")
    except (OSError, ValueError, ScoringError) as err:
        parser.exit(1, f"{parser.prog} {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
