# shellcheck shell=bash disable=SC2154,SC2034
# Sourced by demo.sh and run-tests.sh: set up the environment if needed, then set $venv (the
# environment's folder) and, where java exists, METEOR_JAR (PyPI's METEOR 1.5 jar, fetched once;
# German is then scored with its exact and stem modules). Needs $root (the project root).
bash "$root/scripts/setup-env.sh"
venv=${MMT_ADV_VENV:-$root/.venv}
if [ -z "${METEOR_JAR:-}" ] && command -v java >/dev/null; then
  METEOR_JAR=$(bash "$root/scripts/get-meteor.sh") && export METEOR_JAR
fi
