#!/usr/bin/env bash
# Creates .venv (if missing) and installs modelguard_fast with everything the
# main job and the tests need. Safe to run again, and quick then: the build
# requirements live in .venv (no isolated build environment, whose temporary
# paths would make CMake start over), and build/{wheel_tag} keeps the CMake
# tree, so only changed sources are recompiled.
# MODELGUARD_FAST_CUDA=AUTO (default: CUDA kernels when nvcc is found and a GPU
# is visible), ON or OFF; MODELGUARD_FAST_CUDA_ARCHITECTURES as in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# The CPU build of torch these machines carry; pyproject accepts 2.1 to 2.14.1.
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install --quiet "torch==2.13.0"
# Build requirements (pyproject's [build-system]) plus ninja, installed once.
.venv/bin/python -m pip show scikit-build-core pybind11 ninja >/dev/null 2>&1 \
  || .venv/bin/python -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" "ninja>=1.11"
.venv/bin/python -m pip install --quiet --no-build-isolation ".[test,experiments,cluster,redis]"
# The Redis tests start private redis-server processes: Debian's package (a
# maintained, security-patched 7.x; the PyPI wheels that bundle a server are
# years old). Installed here when missing and we may (root with apt-get).
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing redis-server (Debian package) for the Redis store tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    echo "setup: redis-server not found; the Redis store tests will be skipped (install it, e.g." \
         "'sudo apt-get install redis-server'; on CI (CI=true) they fail instead)" >&2
  fi
fi
