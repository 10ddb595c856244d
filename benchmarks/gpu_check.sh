#!/usr/bin/env bash
# GPU check: build with CUDA for the local GPU, run the CUDA tests, then the GPU
# benchmarks. Meant for a machine with an NVIDIA GPU, python3 with CUDA torch,
# pybind11, cmake, ninja, pytest and pytest-benchmark (wheels in .whl/ are
# installed first when present). Logs go to $OUT (default /tmp/gpu_check).
# Takes under 8 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/gpu.txt"

export PYTHON=python3 MODELGUARD_FAST_CUDA=ON JOBS=$(nproc) BUILD_DIR=build/gpu
export MODELGUARD_FAST_CUDA_ARCHITECTURES=${MODELGUARD_FAST_CUDA_ARCHITECTURES:-90}
start=$(date +%s)
scripts/dev_build.sh > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import modelguard_fast as m, torch; print('cuda_built', m.cuda_built(), 'cuda_available', m.cuda_available(), 'torch', torch.__version__)"

# Warnings from the device image's newer packages must not fail the run: -W default.
timeout 300 python3 -m pytest -p no:cacheprovider -W default -q -k "cuda or gpu" tests \
  2>&1 | tee "$OUT/tests.log" | tail -25
echo "tests rc=${PIPESTATUS[0]}"
# The Bayes matcher's GPU benchmark (with its slow references) is run on its own: MGF_BAYES_DEVICES=cuda.
timeout 240 python3 -m pytest -p no:cacheprovider -W default -q --benchmark-only -k "gpu or cuda" \
  --ignore=benchmarks/bench_bayes.py \
  --benchmark-json="$OUT/bench.json" benchmarks 2>&1 | tee "$OUT/bench.log" | grep -A80 "throughput and ratios"
echo "bench rc=${PIPESTATUS[0]}"
cp .benchmarks/ratios.json "$OUT/ratios.json" 2>/dev/null || true
