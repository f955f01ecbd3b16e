"""The benchmark scripts: their arithmetic, and a short real run of the paired criterion one."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
import benchmark_criterion  # noqa: E402


def test_paired_overhead_is_the_median_of_per_round_ratios():
    times = {
        "cgru": [1.0, 2.0, 1.0, 4.0, 1.0],
        "cgru+q-waae": [1.1, 2.4, 1.3, 4.4, 1.1],  # +10%, +20%, +30%, +10%, +10%
    }
    table = benchmark_criterion.summarize(times)
    row = next(line for line in table.splitlines() if line.startswith("cgru+q-waae"))
    assert "+10.0%" in row and "1300.0" in row  # median ratio, median ms
    assert "[+10.0%, +20.0%]" in row


def test_benchmark_table_takes_medians_and_ratios_to_the_first_system():
    def row(system, tokens, beam5, beam12, ups):
        return {"system": system, "tokens/s": tokens, "updates/s": ups, "peak MiB": 100.0,
                "beam 5 sent/s": beam5, "beam 12 sent/s": beam12, "out tok/sent": 8.0}  # fmt: skip

    lstm = benchmark.median_rows([row("lstm", 100, 10, 5, 1.0), row("lstm", 300, 30, 1, 3.0),
                                  row("lstm", 200, 20, 4, 2.0)])  # fmt: skip
    assert lstm["tokens/s"] == 200 and lstm["beam 12 sent/s"] == 4
    cgru = row("cgru", 300, 30, 6, 2.0)
    mse = row("cgru+mse", 240, 30, 6, 1.6)
    lines = benchmark.format_table([lstm, cgru, mse]).splitlines()
    assert re.search(r"cgru .*\s1\.50\s+1\.50\s+1\.50$", lines[2]), lines[2]
    assert lines[-1] == "overhead per update of cgru+mse vs cgru: +25.0%"


def test_benchmark_criterion_runs_every_mode_through_fairseq(tiny_corpus, tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "benchmark_criterion.py"), "--data",
         str(tiny_corpus / "bin"), "--features", str(tiny_corpus / "features"),
         "--arch", "cgru_mmt_small", "--rounds", "2", "--warmup", "1", "--batch-size", "8"],
        capture_output=True, text=True, env=cli_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for mode in ("mse", "q-waae", "g-wgan"):
        assert re.search(rf"^cgru\+{mode}\s+\d+\.\d\s+[+-]\d+\.\d%", done.stdout, re.M), done.stdout


@pytest.mark.parametrize(
    "flags, message",
    [(["--modes", "mse,wgan"], "unknown modes"), (["--rounds", "1"], "at least 2"),
     (["--data", "x"], "go together")],
)  # fmt: skip
def test_benchmark_criterion_rejects_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        benchmark_criterion.parse_args(flags)
    assert message in capsys.readouterr().err
