"""Is a BLEU gain more than test-set noise? Paired bootstrap resampling (Koehn, 2004), sacreBLEU's.

The paper's gains are under one BLEU point. ``paired_bootstrap`` compares a system's hypotheses with
its baseline's on the same test set: sacreBLEU's ``PairedTest`` (``test_type="bs"``) draws
``N_SAMPLES`` resamples of the sentences (the same draws for both systems, seed ``SACREBLEU_SEED``,
12345 unless set), computes both BLEUs on each, and returns the two-sided p-value of the observed
difference: the probability of a difference at least as large if both systems were equally good.
p < 0.05 tells a gain from noise; p near 1, no evidence of a difference.

BLEU is the tokenized, lowercased BLEU of Multi30K papers (``evaluation.scoring.tok_lc_bleu``,
the ``bleu_tok_lc`` of the scorer), on tokenized hypotheses with BPE removed.

One correction: sacreBLEU 2.6 counts the resampled differences strictly larger than the observed
one, so two systems with the same output (an observed difference of exactly 0, every resampled
difference 0 too) get its smallest p-value, 1 / (N_SAMPLES + 1), as if they differed. An
observed difference of 0 is no evidence of a difference: its p-value is 1.

Seeds are a second source of noise that this test does not see: ``fairseq_mmt_adv.recipes.summary``
prints it beside the p-value as mean +- std over seeds.

``bootstrap_interval`` is the one-system form: the 95 % confidence interval of a BLEU over the
same resamples, to tell whether a published figure lies within a run's test-set noise.

    python -m fairseq_mmt_adv.evaluation.significance interval OUT --references REF
    python -m fairseq_mmt_adv.evaluation.significance paired BASELINE_OUT SYSTEM_OUT \
        --references REF

(OUT: fairseq-generate outputs, decoded with ``--remove-bpe``; REF: tokenized references.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fairseq_mmt_adv.evaluation.scoring import (
    check_count,
    parse_fairseq_generate,
    read_lines,
    tok_lc_bleu,
)

N_SAMPLES = 1000  # sacreBLEU's default number of bootstrap resamples


@dataclass(frozen=True)
class PairedResult:
    """BLEU of the baseline and of the system, and the p-value of their difference."""

    baseline_bleu: float
    system_bleu: float
    p_value: float
    signature: str

    @property
    def difference(self) -> float:
        return self.system_bleu - self.baseline_bleu


def paired_bootstrap(
    baseline: Sequence[str],
    system: Sequence[str],
    references: Sequence[str],
    n_samples: int = N_SAMPLES,
) -> PairedResult:
    """Paired bootstrap resampling of ``system`` against ``baseline`` (tokenized lines, BPE
    removed, one per reference). Raises ValueError when the three differ in length."""
    from sacrebleu.significance import PairedTest

    if not len(baseline) == len(system) == len(references) > 0:
        raise ValueError(
            f"paired test of {len(system)} system and {len(baseline)} baseline hypotheses against "
            f"{len(references)} references: they must be outputs for the same test set"
        )
    test = PairedTest(
        [("baseline", list(baseline)), ("system", list(system))],
        {"BLEU": tok_lc_bleu()},
        [list(references)],
        test_type="bs",
        n_samples=n_samples,
    )
    signatures, scores = test()
    [name] = [key for key in scores if key != "System"]
    base, result = scores[name]
    p_value = 1.0 if result.score == base.score else result.p_value
    return PairedResult(base.score, result.score, p_value, str(signatures[name]))


def hypotheses(path: str | Path) -> list[str]:
    """The hypotheses of a fairseq-generate output (``H-`` lines, in id order)."""
    return parse_fairseq_generate(path)[0]


def paired_bootstrap_files(
    baseline: str | Path, system: str | Path, references: str | Path, n_samples: int = N_SAMPLES
) -> PairedResult:
    """``paired_bootstrap`` of two fairseq-generate outputs (``--remove-bpe``) against a tokenized
    reference file; a count that differs raises ScoringError naming the files."""
    refs = read_lines(references)
    outputs = {path: hypotheses(path) for path in (baseline, system)}
    for path, hyps in outputs.items():
        check_count(str(path), len(hyps), str(references), len(refs))
    return paired_bootstrap(outputs[baseline], outputs[system], refs, n_samples)


@dataclass(frozen=True)
class Interval:
    """A BLEU, and the mean and 95 % confidence half-width of its bootstrap resamples."""

    bleu: float
    mean: float
    half_width: float
    signature: str

    def __str__(self) -> str:
        low, high = self.mean - self.half_width, self.mean + self.half_width
        return (
            f"BLEU {self.bleu:.2f}, bootstrap mean {self.mean:.2f} +- {self.half_width:.2f} "
            f"(95 % interval {low:.2f}-{high:.2f}; {self.signature})"
        )


def bootstrap_interval(
    hyps: Sequence[str], references: Sequence[str], n_samples: int = N_SAMPLES
) -> Interval:
    """The BLEU of ``hyps`` (tokenized, BPE removed) and its 95 % bootstrap interval, from
    sacreBLEU's resampling (seed ``SACREBLEU_SEED``, 12345 unless set)."""
    check_count("hypotheses", len(hyps), "references", len(references))
    bleu = tok_lc_bleu()
    score = bleu.corpus_score(list(hyps), [list(references)], n_bootstrap=n_samples)
    return Interval(score.score, score._mean, score._ci, str(bleu.get_signature()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairseq_mmt_adv.evaluation.significance")
    commands = parser.add_subparsers(dest="command", required=True)
    interval = commands.add_parser("interval", help="a BLEU and its 95 %% bootstrap interval")
    interval.add_argument("output", help="fairseq-generate output (--remove-bpe)")
    paired = commands.add_parser("paired", help="the p-value of a system's BLEU difference")
    paired.add_argument("baseline", help="the baseline's fairseq-generate output")
    paired.add_argument("system", help="the system's fairseq-generate output")
    for command in (interval, paired):
        command.add_argument("--references", required=True, help="tokenized references")
        command.add_argument("--samples", type=int, default=N_SAMPLES, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if args.command == "interval":
        refs = read_lines(args.references)
        print(bootstrap_interval(hypotheses(args.output), refs, args.samples))
        return 0
    result = paired_bootstrap_files(args.baseline, args.system, args.references, args.samples)
    print(
        f"baseline {result.baseline_bleu:.2f}, system {result.system_bleu:.2f}, difference "
        f"{result.difference:+.2f}, p = {result.p_value:.4f} ({result.signature})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
