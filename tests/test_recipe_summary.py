"""fairseq_mmt_adv.recipes.summary, .significance and .training_log: score lines, paired
bootstrap p-values, the results table compared with the baselines, the best validation BLEU of a
log; and the recipes package importing without fairseq."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.evaluation import contrastive, significance
from fairseq_mmt_adv.evaluation.scoring import ScoringError, tok_lc_bleu
from fairseq_mmt_adv.recipes import summary, training_log

REPO = Path(__file__).resolve().parents[1]


def scores(bleu: float, meteor: float | None, sacre: float) -> str:
    return json.dumps({"bleu_tok_lc": bleu, "meteor": meteor, "bleu_sacre": sacre})


def test_score_line(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(scores(38.544, 57.166, 36.0))
    (tmp_path / "b.json").write_text(scores(30.0, None, 29.0))
    assert summary.score_line(tmp_path / "a.json") == "BLEU 38.54 METEOR 57.17"
    assert summary.score_line(tmp_path / "b.json") == "BLEU 30.00 METEOR -"


def test_results_table_has_a_row_per_run_and_split_of_the_beam(tmp_path: Path) -> None:
    run = tmp_path / "en-de" / "q-waae_lr0.2_la0.2" / "seeds1-2-3"
    run.mkdir(parents=True)
    (run / "beam12.ensemble.test.json").write_text(scores(38.5, 57.2, 36.1))
    (run / "beam12.ensemble.test2.json").write_text(scores(28.0, None, 27.25))
    (run / "beam5.ensemble.test.json").write_text(scores(1.0, 1.0, 1.0))  # another beam
    table, _, notes = summary.results_table(tmp_path, 12).partition("\n\n")
    header, *rows = table.splitlines()
    assert header.split() == [
        *("pair", "run", "seeds", "split", "beam", "BLEU", "METEOR", "sacreBLEU", "seeds"),
        *("BLEU", "vs", "dBLEU", "p", "CoMMuTE", "dIncong", "pIncong"),
    ]
    # no seeds' JSON and no baseline run; no evaluate stage output
    no_baseline = ["-", "-", "-", "-", "n/a", "n/a", "n/a"]
    assert [row.split() for row in rows] == [
        ["en-de", "q-waae_lr0.2_la0.2", "1-2-3", "test", "12", "38.50", "57.20", "36.10"]
        + no_baseline,
        ["en-de", "q-waae_lr0.2_la0.2", "1-2-3", "test2", "12", "28.00", "-", "27.25"]
        + no_baseline,
    ]
    assert "dBLEU: the ensemble's BLEU minus that of its family's baseline" in notes
    assert notes.endswith("\nno p-values for en-de: give --data PAIR=DIR (references)")


# Hand-made test sets whose answer is known: tokenized lowercased sentences, 40 of them.
RANDOM = random.Random(7)
WORDS = ["ein", "hund", "frau", "mann", "läuft", "sitzt", "auf", "der", "bank", "im", "park"]
REFERENCES = [" ".join(RANDOM.choices(WORDS, k=9)) for _ in range(40)]
GARBAGE = [" ".join(RANDOM.choices(WORDS, k=9)) for _ in range(40)]
# the references with every third word replaced: a middling system
MIDDLING = [
    " ".join(w if i % 3 else RANDOM.choice(WORDS) for i, w in enumerate(ref.split()))
    for ref in REFERENCES
]


def test_paired_bootstrap_of_identical_systems_is_no_evidence() -> None:
    result = significance.paired_bootstrap(MIDDLING, list(MIDDLING), REFERENCES)
    assert result.difference == 0 and result.p_value == 1.0  # sacreBLEU alone says 0.001
    assert "bs:1000" in result.signature and "tok:none" in result.signature


def test_paired_bootstrap_tells_a_real_gain_from_noise() -> None:
    copied = significance.paired_bootstrap(GARBAGE, REFERENCES, REFERENCES)
    assert copied.system_bleu == pytest.approx(100) and copied.baseline_bleu < 20
    assert copied.p_value < 0.05
    assert copied.p_value == pytest.approx(1 / 1001)  # no resample comes close
    # One sentence of 40 made perfect: BLEU 20.0 -> 23.8, a gain from one sentence, not from a
    # better system: noise by this test (p 0.15).
    one_better = [*MIDDLING[:-1], REFERENCES[-1]]
    small = significance.paired_bootstrap(MIDDLING, one_better, REFERENCES)
    assert small.difference > 3 and small.p_value > 0.05


def fairseq_output(path: Path, hypotheses: list[str]) -> Path:
    """A fairseq-generate output with these hypotheses (BPE removed), ids shuffled."""
    lines = [f"S-{i}\tsource\nH-{i}\t-0.5\t{hyp}" for i, hyp in enumerate(hypotheses)]
    random.Random(len(hypotheses)).shuffle(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_paired_bootstrap_of_files_names_a_file_of_another_split(tmp_path: Path) -> None:
    references = tmp_path / "test.de"
    references.write_text("\n".join(REFERENCES) + "\n")
    good = fairseq_output(tmp_path / "good.txt", REFERENCES)
    bad = fairseq_output(tmp_path / "garbage.txt", GARBAGE)
    assert significance.paired_bootstrap_files(bad, good, references).p_value < 0.05
    short = fairseq_output(tmp_path / "short.txt", GARBAGE[:39])
    with pytest.raises(ScoringError, match=f"{short} has 39 hypotheses but {references} has 40"):
        significance.paired_bootstrap_files(good, short, references)


def test_bootstrap_interval_brackets_the_bleu() -> None:
    result = significance.bootstrap_interval(MIDDLING, REFERENCES)
    assert result.bleu == pytest.approx(tok_lc_bleu().corpus_score(MIDDLING, [REFERENCES]).score)
    assert 0 < result.half_width < 30
    assert result.mean - result.half_width < result.bleu < result.mean + result.half_width
    perfect = significance.bootstrap_interval(REFERENCES, REFERENCES)
    assert [perfect.bleu, perfect.mean, perfect.half_width] == pytest.approx([100, 100, 0])
    with pytest.raises(ScoringError, match="39 hypotheses but references has 40"):
        significance.bootstrap_interval(MIDDLING[:39], REFERENCES)


def test_significance_command_line(tmp_path: Path, capsys) -> None:
    references = tmp_path / "test.de"
    references.write_text("\n".join(REFERENCES) + "\n")
    middling = fairseq_output(tmp_path / "middling.txt", MIDDLING)
    garbage = fairseq_output(tmp_path / "garbage.txt", GARBAGE)
    assert significance.main(["interval", str(middling), "--references", str(references)]) == 0
    interval = significance.bootstrap_interval(MIDDLING, REFERENCES)
    assert capsys.readouterr().out.startswith(f"BLEU {interval.bleu:.2f}, bootstrap mean ")
    significance.main(["paired", str(garbage), str(middling), "--references", str(references)])
    paired = significance.paired_bootstrap(GARBAGE, MIDDLING, REFERENCES)
    assert capsys.readouterr().out.startswith(
        f"baseline {paired.baseline_bleu:.2f}, system {paired.system_bleu:.2f}, difference "
        f"{paired.difference:+.2f}, p = {paired.p_value:.4f}"
    )


def results_tree(root: Path) -> Path:
    """Decoded and scored ensembles of both families (cGRU beam 12, Transformer beam 5) and the
    data directory with the references; returns the data directory."""
    data = root / "data" / "en-de"
    (data / "text").mkdir(parents=True)
    (data / "text" / "test.de").write_text("\n".join(REFERENCES) + "\n")
    outputs = {
        ("baseline", "12"): (GARBAGE, 2.0),
        ("q-waae_lr0.2_la0.2", "12"): (REFERENCES, 100.0),
        ("transformer-text-only", "5"): (MIDDLING, 50.0),
        ("gated+mse_lr0.2", "5"): (MIDDLING, 50.0),
    }
    for (run, beam), (hypotheses, bleu) in outputs.items():
        base = root / "results" / "en-de" / run / "seeds1-2" / f"beam{beam}.ensemble.test"
        fairseq_output(base.with_name(base.name + ".txt"), hypotheses)
        base.with_name(base.name + ".json").write_text(scores(bleu, None, bleu - 1))
    seeds = {"mean": {"test": {"BLEU": 97.5}}, "std": {"test": {"BLEU": 1.25}}, "seeds": {}}
    qwaae = root / "results" / "en-de" / "q-waae_lr0.2_la0.2" / "seeds1-2"
    (qwaae / "beam12.seeds.json").write_text(json.dumps(seeds))
    return data


def test_the_table_compares_each_system_with_its_familys_baseline(tmp_path: Path) -> None:
    data = results_tree(tmp_path)
    table = summary.results_table(tmp_path / "results", [12, 5], {"en-de": data})
    rows = {line.split()[1]: line.split()[4:] for line in table.splitlines()[1:5]}
    not_evaluated = ["n/a", "n/a", "n/a"]  # no evaluate stage output
    assert rows == {
        "baseline": ["12", "2.00", "-", "1.00", "-", "-", "-", "-", *not_evaluated],
        "q-waae_lr0.2_la0.2": ["12", "100.00", "-", "99.00", "97.50±1.25", "baseline"]
        + [rows["q-waae_lr0.2_la0.2"][6], "0.001", *not_evaluated],
        "transformer-text-only": ["5", "50.00", "-", "49.00", "-", "-", "-", "-", *not_evaluated],
        "gated+mse_lr0.2": ["5", "50.00", "-", "49.00", "-", "transformer-text-only"]
        + ["+0.00", "1.000", *not_evaluated],
    }
    assert float(rows["q-waae_lr0.2_la0.2"][6]) > 80  # the BLEU gain over the baseline
    assert "no p-values" not in table


def commute_output(path: Path, right: list[bool]) -> None:
    """A fairseq-mmt-evaluate contrastive --json output with these lines right."""
    lines = [{"correct": -1.0, "incorrect": -2.0 if ok else -0.5, "right": ok} for ok in right]
    result = {"accuracy": 100 * sum(right) / len(right), "items": len(right), "lines": lines}
    path.write_text(json.dumps({**result, "interval": [0, 100], "pairs": None}))


def incongruent_output(path: Path, delta: float, p_value: float) -> None:
    """A fairseq-mmt-evaluate incongruent --json output (the keys the summary reads and more)."""
    result = {"congruent": 40.0, "incongruent": 40.0 - delta, "incongruent_std": 0.5}
    path.write_text(json.dumps({**result, "delta": delta, "p_value": p_value}))


def test_the_table_shows_the_image_use_of_each_seed(tmp_path: Path) -> None:
    data = results_tree(tmp_path)
    qwaae = tmp_path / "results" / "en-de" / "q-waae_lr0.2_la0.2" / "seeds1-2"
    # seed 1 right on 30 of 40 lines, seed 2 on 20 (every odd line wrong as well)
    seed1 = [i % 4 != 3 for i in range(40)]
    seed2 = [ok and i % 2 == 0 for i, ok in enumerate(seed1)]
    commute_output(qwaae / "seed1.contrastive.commute.json", seed1)
    commute_output(qwaae / "seed2.contrastive.commute.json", seed2)
    incongruent_output(qwaae / "beam12.seed1.incongruent.test.json", 3.0, 0.001)
    incongruent_output(qwaae / "beam12.seed2.incongruent.test.json", 1.0, 0.04)
    gated = tmp_path / "results" / "en-de" / "gated+mse_lr0.2" / "seeds1-2"
    incongruent_output(gated / "beam5.seed2.incongruent.test.json", -0.25, 0.6)  # seed 2 only
    incongruent_output(gated / "beam12.seed1.incongruent.test.json", 9.0, 0.0)  # another beam
    table = summary.results_table(tmp_path / "results", [12, 5], {"en-de": data})
    header, *lines = table.split("\n\n")[0].splitlines()
    assert header.split()[-3:] == ["CoMMuTE", "dIncong", "pIncong"]
    rows = {line.split()[1]: line.split()[-3:] for line in lines}
    # the interval: of the mean over the seeds, resampling the lines
    per_line = np.mean([seed1, seed2], axis=0)
    low, high = contrastive.interval(per_line)
    assert low < 62.5 < high and high - low > 10
    assert rows["q-waae_lr0.2_la0.2"] == [
        f"62.50±17.68[{low:.1f}-{high:.1f}]",  # 75 and 50: sample std 17.68
        "+2.00±1.41",
        "0.040",  # the largest of the seeds' p-values
    ]
    assert rows["gated+mse_lr0.2"] == ["n/a", "-0.25(1/2)", "0.600"]
    assert rows["baseline"] == rows["transformer-text-only"] == ["n/a", "n/a", "n/a"]
    assert "CoMMuTE: contrastive accuracy" in table and "n/a: no evaluate stage output" in table


def test_a_single_seed_has_its_own_interval(tmp_path: Path) -> None:
    run = tmp_path / "en-fr" / "q-waae_lr0.2_la0.2" / "seeds3"
    run.mkdir(parents=True)
    (run / "beam12.ensemble.test2.json").write_text(scores(40.0, None, 39.0))
    right = [i % 5 != 0 for i in range(50)]
    commute_output(run / "seed3.contrastive.commute.json", right)
    incongruent_output(run / "beam12.seed3.incongruent.test2.json", 0.0, 1.0)
    [row] = summary.results_table(tmp_path, 12).splitlines()[1:2]
    low, high = contrastive.interval(np.array(right))  # what fairseq-mmt-evaluate reports
    assert row.split()[-3:] == [f"80.00[{low:.1f}-{high:.1f}]", "+0.00", "1.000"]


def test_an_evaluation_output_without_its_keys_is_named(tmp_path: Path) -> None:
    data = results_tree(tmp_path)
    bad = (
        tmp_path
        / "results"
        / "en-de"
        / "baseline"
        / "seeds1-2"
        / "beam12.seed1.incongruent.test.json"
    )
    bad.write_text(scores(1.0, None, 1.0))  # a scoring output in its place
    with pytest.raises(ValueError, match=f"{bad} lacks delta, p_value: give fairseq-mmt-evaluate"):
        summary.results_table(tmp_path / "results", [12, 5], {"en-de": data})
    command = [sys.executable, "-m", "fairseq_mmt_adv.recipes.summary", "table"]
    done = subprocess.run(
        [*command, str(tmp_path / "results"), "12"], capture_output=True, text=True
    )
    assert done.returncode == 1 and f"{bad} lacks delta" in done.stderr


LOG = """\
{"epoch": 1, "valid_loss": "8.0", "valid_bleu": "1.5", "valid_num_updates": "7"}
{"epoch": 1, "train_loss": "8.4", "train_num_updates": "7"}
{"epoch": 2, "update": 1.2, "loss": "7.7", "num_updates": "9"}
{"epoch": 2, "valid_loss": "5.4", "valid_bleu": "2.25", "valid_best_bleu": "2.25"}
{"epoch": 3, "valid_loss": "5.1", "valid_bleu": "2.0", "valid_best_bleu": "2.25"}
"""


def test_best_valid_bleu_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "run" / "seed1" / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(LOG)
    assert training_log.best_valid_bleu(log) == (3, 2.25)
    assert summary.best_bleu_line(log) == "3 epochs, best valid BLEU 2.25"
    assert training_log.read_log(log).name == "run/seed1"
    log.write_text(LOG.splitlines()[2] + "\n")  # no validation yet
    assert summary.best_bleu_line(log) == "0 epochs, best valid BLEU nan"


def test_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(scores(38.544, 57.166, 36.0))
    command = [sys.executable, "-m", "fairseq_mmt_adv.recipes.summary"]
    done = subprocess.run([*command, "score-line", str(tmp_path / "a.json")], capture_output=True)
    assert done.stdout == b"BLEU 38.54 METEOR 57.17\n"
    missing = subprocess.run([*command, "best-bleu", str(tmp_path / "no.log")], capture_output=True)
    assert missing.returncode == 1 and str(tmp_path / "no.log") in missing.stderr.decode()
    data = results_tree(tmp_path)
    table = [*command, "table", str(tmp_path / "results"), "12", "5", "--data"]
    done = subprocess.run([*table, f"en-de={data}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [gated] = [line.split() for line in done.stdout.splitlines() if "gated+mse" in line]
    assert gated[-6:] == ["transformer-text-only", "+0.00", "1.000", "n/a", "n/a", "n/a"]
    bad = subprocess.run([*table, str(data)], capture_output=True, text=True)
    assert bad.returncode == 1 and "--data takes PAIR=DIR (e.g. en-de=data-bin/en-de)" in bad.stderr


def test_importing_the_recipes_registers_the_plugin() -> None:
    code = (
        "from fairseq_mmt_adv.recipes import benchmarks, fairseq_steps, features, moses, summary\n"
        "from fairseq_mmt_adv.recipes import bpe, training_log\n"
        "from fairseq_mmt_adv.evaluation import significance\n"
        f"{REGISTERED}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
