"""fairseq_mmt_adv.recipes.summary and .training_log: score lines, the results table, the best
validation BLEU of a log; and the recipes package importing without fairseq."""

import json
import subprocess
import sys
from pathlib import Path

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
    header, *rows = summary.results_table(tmp_path, 12).splitlines()
    assert header.split() == ["pair", "run", "seeds", "split", "BLEU", "METEOR", "sacreBLEU"]
    assert [row.split() for row in rows] == [
        ["en-de", "q-waae_lr0.2_la0.2", "1-2-3", "test", "38.50", "57.20", "36.10"],
        ["en-de", "q-waae_lr0.2_la0.2", "1-2-3", "test2", "28.00", "-", "27.25"],
    ]


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


def test_the_recipes_import_without_fairseq_or_torch() -> None:
    code = (
        "import sys\n"
        "from fairseq_mmt_adv.recipes import benchmarks, fairseq_steps, features, moses, summary\n"
        "from fairseq_mmt_adv.recipes import training_log\n"
        "assert not {'fairseq', 'torch'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
