# shellcheck shell=bash disable=SC2154,SC2034
# Sourced by demo.sh and run-tests.sh: set up the environment if needed, then set $venv (the
# environment's folder, $MMT_ADV_VENV or .venv), put its bin/ first on PATH and its python in
# PYTHON (so that the scripts that the tests and the demo start, which otherwise look for the
# project's .venv, use this environment) and, where java exists, METEOR_JAR (PyPI's METEOR 1.5
# jar, fetched once; German is then scored with its exact and stem modules). Needs $root (the
# project root).
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
export PATH="$venv/bin:$PATH"
# PYTHON chose the Python that created the environment (setup-env.sh); to the scripts started
# from here (train.sh, experiments.sh) it is the Python with the plugin: this environment's.
export PYTHON="$venv/bin/python"
if [ -z "${METEOR_JAR:-}" ] && command -v java >/dev/null; then
  METEOR_JAR=$(bash "$root/scripts/get-meteor.sh") && export METEOR_JAR
fi
