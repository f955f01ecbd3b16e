#!/usr/bin/env bash
# The test command: set up the environment if needed, lint, check the formatting, run the test
# suite (CPU) and print its slowest tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/activate.sh
source "$root/scripts/activate.sh"
cd "$root"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
# One worker per core (PYTEST_WORKERS overrides); a test file stays on one worker, so that its
# module fixtures (trained models) are built once. A test that hangs (a rank waiting for one
# that died, say) fails after --timeout seconds instead of holding the run: the longest takes
# about 50 s on the idle machine, 140 s on a busy one.
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-auto}" --dist loadfile \
  --timeout 600 --durations=15 "$@"
