#!/usr/bin/env bash
# The main job: set up the environment if needed, then train, decode and score every system on
# the embedded demo corpus (CPU, a few minutes). Extra arguments go to scripts/run_demo.py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/activate.sh
source "$root/scripts/activate.sh"
exec "$venv/bin/python" "$root/scripts/run_demo.py" "$@"
