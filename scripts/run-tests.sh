#!/usr/bin/env bash
# The test command: set up the environment if needed, lint, run the test suite (CPU).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
cd "$root"
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
