#!/usr/bin/env bash
# The main job: set up the environment if needed, then train, decode and score every system on
# the embedded demo corpus (CPU, a few minutes). Extra arguments go to scripts/run_demo.py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
# METEOR (exact+stem for German) needs java and a METEOR 1.5 jar: fetch PyPI's once if none is set
if [ -z "${METEOR_JAR:-}" ] && command -v java >/dev/null; then
  METEOR_JAR=$(bash "$root/scripts/get-meteor.sh") && export METEOR_JAR
fi
exec "$venv/bin/python" "$root/scripts/run_demo.py" "$@"
