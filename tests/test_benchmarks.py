"""The benchmark scripts: their arithmetic, and a short real run of the paired one."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
import benchmark_paired  # noqa: E402


def test_paired_figures_are_medians_of_per_round_ratios():
    times = {
        "lstm": [1.0, 2.0, 1.0, 4.0, 1.0],
        "cgru": [0.5, 1.2, 0.6, 2.0, 0.8],  # ratios 0.5, 0.6, 0.6, 0.5, 0.8
    }
    table = benchmark_paired.summarize("title", times, "lstm")
    row = next(line for line in table.splitlines() if line.startswith("cgru"))
    assert row.split() == ["cgru", "800.0", "0.600", "[0.500,", "0.600]", "1.67"]


def test_paired_rounds_rotate_the_order_and_drop_the_warmup():
    calls = []

    def measure(name):
        return lambda r: calls.append((r, name)) or float(r)

    times = benchmark_paired.paired_rounds({n: measure(n) for n in "abc"}, rounds=3, warmup=1)
    assert [name for _, name in calls] == list("abcbcacababc")
    assert times == {n: [1.0, 2.0, 3.0] for n in "abc"}


def test_benchmark_table_takes_medians_and_ratios_to_the_first_system():
    def row(system, tokens, beam5, beam12, ups):
        return {
            "system": system,
            "tokens/s": tokens,
            "updates/s": ups,
            "peak MiB": 100.0,
            "beam 5 sent/s": beam5,
            "beam 12 sent/s": beam12,
            "out tok/sent": 8.0,
        }

    lstm = benchmark.median_rows(
        [row("lstm", 100, 10, 5, 1.0), row("lstm", 300, 30, 1, 3.0), row("lstm", 200, 20, 4, 2.0)]
    )
    assert lstm["tokens/s"] == 200 and lstm["beam 12 sent/s"] == 4
    cgru = row("cgru", 300, 30, 6, 2.0)
    mse = row("cgru+mse", 240, 30, 6, 1.6)
    lines = benchmark.format_table([lstm, cgru, mse]).splitlines()
    assert re.search(r"cgru .*\s1\.50\s+1\.50\s+1\.50$", lines[2]), lines[2]
    assert lines[-1] == "overhead per update of cgru+mse vs cgru: +25.0%"


def test_paired_benchmark_trains_and_decodes_every_system(tiny_corpus):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "benchmark_paired.py"),
            "--data",
            str(tiny_corpus / "bin"),
            "--features",
            str(tiny_corpus / "features"),
            "--systems",
            "lstm,cgru-reference,cgru,cgru+q-waae,cgru+g-wgan",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--decode-batch-size",
            "8",
            "--beam",
            "3",
            "--decode-length",
            "4",
            "--profile",
            "5",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for system in ("lstm", "cgru", "cgru+g-wgan"):
        for work in ("training update", "beam search"):
            profile = done.stdout.split(f"profile of one {work}: {system}\n")[1]
            assert re.search(r"^\s+aten::\w+", profile, re.M), profile  # an operator table
    sections = re.sub(r"\nprofile of one .*?(?=\n\n|\Z)", "", done.stdout, flags=re.S)
    sections = sections.split("\nbeam 3 decoding")
    assert len(sections) == 2 and sections[0].strip().startswith("training updates, batch 8")
    for section in sections:
        assert re.search(r"^lstm\s+\d+\.\d\s+1\.000\s", section, re.M), section
        for system in ("cgru-reference", "cgru", r"cgru\+q-waae", r"cgru\+g-wgan"):
            assert re.search(rf"^{system}\s+\d+\.\d\s+\d+\.\d{{3}}\s", section, re.M), section


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--systems", "lstm,gru"], "unknown systems"),
        (["--rounds", "1"], "at least 2"),
        (["--data", "x"], "go together"),
        (["--systems", "cgru"], "not among --systems"),
    ],
)
def test_paired_benchmark_rejects_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        benchmark_paired.parse_args(flags)
    assert message in capsys.readouterr().err


def test_cli_benchmark_decodes_hypotheses_of_the_forced_length(tiny_corpus, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "benchmark.py"),
            "--data",
            str(tiny_corpus / "bin"),
            "--features",
            str(tiny_corpus / "features"),
            "--systems",
            "lstm,cgru",
            "--updates",
            "8",
            "--batch-size",
            "8",
            "--decode-length",
            "5",
            "--threads",
            "1",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "hypotheses of 5 tokens" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("lstm", "cgru"))]
    assert [row[0] for row in rows] == ["lstm", "cgru"]
    # columns: tokens/s, updates/s, peak MiB, beam 5 sent/s, beam 12 sent/s, out tok/sent, ...
    assert [float(row[6]) for row in rows] == [6.0, 6.0]  # 5 tokens and the end of sentence
