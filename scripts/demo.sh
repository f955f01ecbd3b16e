#!/usr/bin/env bash
# The main job: set up the environment if needed, then train, decode and score every system on
# the embedded demo corpus (CPU, a few minutes). Extra arguments go to scripts/run_demo.py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
exec "$venv/bin/python" "$root/scripts/run_demo.py" "$@"
