"""The suite's time profile (suite_profile.py): its report of the recorded tests."""

import subprocess
import sys

from suite_profile import cpu_seconds, report


def test_the_report_sums_cpu_per_worker_and_file_and_lists_the_costliest():
    records = [
        {"test": "tests/test_a.py::one", "worker": "gw0", "wall": 9.0, "cpu": 4.0},
        {"test": "tests/test_a.py::two", "worker": "gw1", "wall": 2.0, "cpu": 1.5},
        {"test": "tests/test_b.py::three", "worker": "gw1", "wall": 3.0, "cpu": 2.5},
    ]
    lines = report(records, top=2).splitlines()
    assert lines[0] == "3 tests, 8 s CPU in all"
    assert lines[1:3] == ["  worker gw0: 4 s CPU", "  worker gw1: 4 s CPU"]
    assert lines[4:6] == ["    6  tests/test_a.py", "    2  tests/test_b.py"]
    costliest = ["  4.0     9.0  tests/test_a.py::one", "  2.5     3.0  tests/test_b.py::three"]
    assert lines[7:] == costliest


def test_cpu_time_counts_finished_child_processes():
    before = cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert cpu_seconds() - before > 0.1
