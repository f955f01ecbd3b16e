"""Is a BLEU gain more than test-set noise? Paired bootstrap resampling (Koehn, 2004), sacreBLEU's.

The paper's gains are under one BLEU point. ``paired_bootstrap`` compares a system's hypotheses with
its baseline's on the same test set: sacreBLEU's ``PairedTest`` (``test_type="bs"``) draws
``N_SAMPLES`` resamples of the sentences (the same draws for both systems, seed ``SACREBLEU_SEED``,
12345 unless set), computes both BLEUs on each, and returns the two-sided p-value of the observed
difference: the probability of a difference at least as large if both systems were equally good.
p < 0.05 tells a gain from noise; p near 1, no evidence of a difference.

BLEU is the tokenized, lowercased BLEU of Multi30K papers (``fairseq_mmt_adv.scoring.tok_lc_bleu``,
the ``bleu_tok_lc`` of the scorer), on tokenized hypotheses with BPE removed.

One correction: sacreBLEU 2.6 counts the resampled differences strictly larger than the observed
one, so two systems with the same output (an observed difference of exactly 0, every resampled
difference 0 too) get its smallest p-value, 1 / (N_SAMPLES + 1), as if they differed. An
observed difference of 0 is no evidence of a difference: its p-value is 1.

Seeds are a second source of noise that this test does not see: ``fairseq_mmt_adv.recipes.summary``
prints it beside the p-value as mean +- std over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fairseq_mmt_adv.scoring import check_count, parse_fairseq_generate, read_lines, tok_lc_bleu

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
