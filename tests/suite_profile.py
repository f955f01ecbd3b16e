"""Where the test suite's time goes: each test's wall time and CPU time (its worker's own and
that of the child processes it ran), recorded while the suite runs, and a report of them.

    SUITE_PROFILE=profile.jsonl bash scripts/run-tests.sh   # conftest.py records each test
    python tests/suite_profile.py profile.jsonl             # totals, per file, costliest tests

CPU time, unlike wall time, does not depend on what else the machine runs: the sum over the
tests, divided by the workers, bounds the suite's wall time from below.
"""

import argparse
import json
import os
import resource
import time
from collections import Counter
from pathlib import Path

import pytest


def cpu_seconds() -> float:
    """User + system time of this process and of its finished (waited-for) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup, call and teardown of one test, in the process that runs it."""
    wall, cpu = time.time(), cpu_seconds()
    yield
    record = {
        "test": item.nodeid,
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "wall": time.time() - wall,
        "cpu": cpu_seconds() - cpu,
    }
    with open(os.environ["SUITE_PROFILE"], "a") as out:
        out.write(json.dumps(record) + "\n")


def report(records: list[dict], top: int) -> str:
    """The CPU total, per worker and per file, and the ``top`` costliest tests."""
    total = sum(r["cpu"] for r in records)
    workers, files = Counter(), Counter()
    for r in records:
        workers[r["worker"]] += r["cpu"]
        files[r["test"].split("::")[0]] += r["cpu"]
    lines = [f"{len(records)} tests, {total:.0f} s CPU in all"]
    lines += [f"  worker {w}: {cpu:.0f} s CPU" for w, cpu in sorted(workers.items())]
    lines += ["CPU s  file"] + [f"{cpu:5.0f}  {name}" for name, cpu in files.most_common()]
    lines += ["CPU s  wall s  test"]
    costliest = sorted(records, key=lambda r: -r["cpu"])[:top]
    lines += [f"{r['cpu']:5.1f}  {r['wall']:6.1f}  {r['test']}" for r in costliest]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="the file SUITE_PROFILE named")
    parser.add_argument("--top", type=int, default=20, help="costliest tests to list")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.profile.read_text().splitlines()]
    print(report(records, args.top))


if __name__ == "__main__":
    main()
