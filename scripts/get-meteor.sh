#!/usr/bin/env bash
# Fetch a METEOR 1.5 jar that PyPI has (the one pycocoevalcap ships, with the English paraphrase
# table only) into a cache folder and print the jar's path:  export METEOR_JAR=$(bash scripts/get-meteor.sh)
# For German/French METEOR 1.5 as published, use the jar of CMU's Meteor 1.5 release with its
# data/ folder instead (see fairseq_mmt_adv/evaluation/scoring.py); with this one the scorer reports
# "METEOR 1.5 (exact+stem)" for languages other than English.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${METEOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fairseq-mmt-adv/meteor}
jar="$cache/meteor-1.5.jar"
if [ ! -f "$jar" ]; then
  py=${MMT_ADV_VENV:-$root/.venv}/bin/python
  [ -x "$py" ] || py=python3
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "downloading pycocoevalcap (about 100 MB) for its METEOR 1.5 jar" >&2
  "$py" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" pycocoevalcap==1.2 >&2
  mkdir -p "$cache/data"
  unzip -q -o -j "$tmp"/pycocoevalcap-*.whl pycocoevalcap/meteor/data/paraphrase-en.gz -d "$cache/data"
  unzip -q -o -j "$tmp"/pycocoevalcap-*.whl pycocoevalcap/meteor/meteor-1.5.jar -d "$tmp/jar"
  mv "$tmp/jar/meteor-1.5.jar" "$jar"
fi
echo "$jar"
