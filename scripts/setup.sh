#!/usr/bin/env bash
# Creates .venv (if missing) and installs modelguard_fast with everything the
# main job and the tests need. Safe to run again: it reuses what is there and
# rebuilds the extension incrementally (build/ keeps the CMake tree).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch these machines carry; pyproject accepts 2.1 to 2.14.1.
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet ".[test,experiments]"
