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
.venv/bin/python -m pip install --quiet --no-build-isolation ".[test,experiments,cluster]"
