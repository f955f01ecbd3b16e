#!/usr/bin/env bash
# Create (or re-use) the project's virtual environment and install the plugin into it.
#
#   MMT_ADV_VENV  where the environment lives (default: .venv in the project root)
#   TORCH_SPEC    the torch to install when none is there (default: torch==2.13.0), with pip's
#                 options if any (words split at spaces): PyPI's Linux wheel is a CUDA build
#                 (several GB with its nvidia packages; it runs on the CPU too), a CPU build
#                 that pip finds (find-links, or an --index-url in TORCH_SPEC) is taken first
#   PYTHON        the Python that creates the environment (default: python3, 3.11+)
#
# If that Python already has torch (a CUDA build, say), the environment sees it through
# --system-site-packages instead of downloading another. fairseq comes from fairseq-fixed,
# built against that torch (about 3-5 minutes the first time). A second run does nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMT_ADV_VENV:-$root/.venv}
python=${PYTHON:-python3}
stamp="$venv/.fairseq-mmt-adv-installed"
want=$(cat "$root/setup.py" "$root/pyproject.toml" "$root/scripts/setup-env.sh" | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "environment ready: $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  if "$python" -c "import torch" 2>/dev/null; then
    echo "creating $venv (re-using the torch of $python)"
    "$python" -m venv --system-site-packages "$venv"
  else
    echo "creating $venv"
    "$python" -m venv "$venv"
  fi
fi
py="$venv/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q)
if ! "$py" -c "import torch" 2>/dev/null; then
  read -r -a torch_spec <<<"${TORCH_SPEC:-torch==2.13.0}"
  echo "installing ${torch_spec[*]}"
  "${pip[@]}" "${torch_spec[@]}"
fi
# Every install below keeps the torch found here: pip stops rather than replace it. The version
# is the installed distribution's, which pip compares: PyPI's wheel says 2.13.0 where
# torch.__version__ says 2.13.0+cu130.
torch_version=$("$py" -c "from importlib.metadata import version; print(version('torch'))")
echo "torch==$torch_version" >"$venv/torch-constraint.txt"
pip+=(--constraint "$venv/torch-constraint.txt")
# torchvision==0.28.0 (the test and features extras) requires torch==2.13.0 exactly, any build of
# it (+cpu, +cu128...). Another torch (re-used from $python) would make pip fail on it: then the
# plugin comes without those extras, and the torchvision made for that torch is to be installed
# by hand.
extras=test,tensorboard
if [ "${torch_version%%+*}" != 2.13.0 ]; then
  echo "warning: torch $torch_version: torchvision==0.28.0 needs torch 2.13.0, so the test and" \
    "features extras are left out; install by hand the torchvision release made for torch" \
    "$torch_version (the tests and scripts/extract_features.py need it) and the other" \
    "packages of those extras (setup.py)" >&2
  extras=tensorboard
fi
# fairseq-fixed builds its extensions against the torch, numpy and cython found here
"${pip[@]}" cython numpy "setuptools<81" wheel
echo "installing fairseq-fixed and the plugin (the first time builds fairseq: a few minutes)"
"${pip[@]}" --no-build-isolation -e "${root}[$extras]"
"$py" -c "import fairseq, fairseq_mmt_adv; print('fairseq', fairseq.__version__)" 2>/dev/null
echo "$want" >"$stamp"
echo "environment ready: $venv"
