#!/usr/bin/env bash
# Builds the extension into the source tree for quick iteration without
# reinstalling: afterwards `PYTHONPATH=. python -m pytest` uses it.
# MODELGUARD_FAST_CUDA (AUTO/ON/OFF) and MODELGUARD_FAST_CUDA_ARCHITECTURES apply as for pip.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
build=${BUILD_DIR:-build/dev}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSKBUILD_PROJECT_NAME=modelguard_fast -DSKBUILD_PROJECT_VERSION=0.2.0 \
  -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
  -DMODELGUARD_FAST_CUDA="${MODELGUARD_FAST_CUDA:-AUTO}" \
  -DMODELGUARD_FAST_CUDA_ARCHITECTURES="${MODELGUARD_FAST_CUDA_ARCHITECTURES:-80-real;90}" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
cp "$build"/_C*.so modelguard_fast/
