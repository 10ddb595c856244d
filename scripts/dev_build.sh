#!/usr/bin/env bash
# Builds the extension into src/modelguard_fast without installing (for the GPU
# check on a bare machine): afterwards `PYTHONPATH=src python -m pytest` uses it.
# MODELGUARD_FAST_CUDA (AUTO/ON/OFF), MODELGUARD_FAST_CUDA_ARCHITECTURES and MODELGUARD_FAST_ISA_VARIANTS apply as for pip;
# COPY=0 only builds (CI's check that the CUDA kernels compile).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
build=${BUILD_DIR:-build/dev}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/modelguard_fast/__init__.py)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSKBUILD_PROJECT_NAME=modelguard_fast -DSKBUILD_PROJECT_VERSION="$version" \
  -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
  -DMODELGUARD_FAST_CUDA="${MODELGUARD_FAST_CUDA:-AUTO}" \
  -DMODELGUARD_FAST_CUDA_ARCHITECTURES="${MODELGUARD_FAST_CUDA_ARCHITECTURES:-80-real;90}" \
  -DMODELGUARD_FAST_ISA_VARIANTS="${MODELGUARD_FAST_ISA_VARIANTS:-ON}" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
[ "${COPY:-1}" = 0 ] || cp "$build"/_C*.so src/modelguard_fast/
