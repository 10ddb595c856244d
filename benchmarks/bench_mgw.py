"""ModelGuard-W: the exact batched solver against HiGHS solving the same LP row by row, in the same run.

Reference: HiGHS through highspy as its user would run it, one prediction at a
time: build the LP of tests/reference_mgw.py (x, and d >= |x - y| for the L1
budget), pass it to one reused Highs object (single-threaded), solve, read x.
Its cost per row does not depend on the batch, so at batch sizes above
HIGHS_ROWS[C] it is timed on the first HIGHS_ROWS[C] rows of the batch and its
time per row reported. Predictions: softmax of Gaussian logits with one class
boosted (classifier-like), float64, eps = 1.0, margin 1e-4, log_shift 1e-6.
Before timing, both solvers' answers on the timed rows are checked to agree.
The GPU benchmark (float32 rows, rows/s at batch 1,000,000, C = 100, CUDA
events) needs no HiGHS; it is compared with the CPU kernel on the same machine.

Run: pytest -p no:cacheprovider --benchmark-only benchmarks/bench_mgw.py
"""

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from conftest import median_seconds, timed
from modelguard_fast.ops import solve_mgw

EPS = 1.0
SHIFT = 1e-6
HIGHS_ROWS = {10: 200, 100: 40, 256: 12}
ROUNDS = {1: 300, 256: 40, 4096: 8}


def predictions(n: int, num_classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), rng.integers(0, num_classes, n)] += rng.uniform(1.0, 9.0, n)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("C", [10, 100, 256])
@pytest.mark.parametrize("batch", [1, 256, 4096])
def test_mgw_cpu_vs_highs(benchmark, ratios, C, batch):
    pytest.importorskip("highspy", reason="HiGHS is the reference")
    from reference_mgw import new_highs, objective, solve_highs

    def highs_rows(rows, highs):
        return [solve_highs(row, EPS, highs=highs) for row in rows]

    def check_against_highs(rows, highs):
        x, feasible = solve_mgw(rows, eps=EPS)
        for i, ref in enumerate(highs_rows(rows, highs)):
            assert bool(feasible[i]) == ref.feasible
            if ref.feasible:
                assert objective(x[i], rows[i], SHIFT) - ref.objective <= 1e-8

    y = predictions(batch, C, seed=C)
    reference_rows = y[: min(batch, HIGHS_ROWS[C])]
    highs = new_highs()
    check_against_highs(reference_rows, highs)  # correct before timing

    benchmark.group = f"mgw C={C} batch={batch}"
    benchmark.pedantic(solve_mgw, args=(y,), kwargs={"eps": EPS}, rounds=ROUNDS[batch],
                       iterations=10 if batch == 1 else 1, warmup_rounds=1)
    ours = median_seconds(benchmark) / batch
    theirs = timed(lambda: highs_rows(reference_rows, highs), repeats=3) / len(reference_rows)
    ratios.add(benchmark.group, f"modelguard_fast (cpu, {mgf.kernel_threads()} threads)", ours)
    ratios.add(benchmark.group, f"reference: HiGHS row by row ({len(reference_rows)} rows timed)", theirs,
               reference=True)
    benchmark.extra_info.update(seconds_per_row=ours, highs_seconds_per_row=theirs, ratio=theirs / ours,
                                highs_rows_timed=len(reference_rows), threads=mgf.kernel_threads())


@pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA GPU and a CUDA build")
def test_mgw_cuda_rows_per_second(benchmark, ratios):
    C, batch = 100, 1_000_000
    host = predictions(batch, C, seed=7).astype(np.float32)
    y = torch.from_numpy(host).cuda()
    head = torch.from_numpy(host[:4096])
    x_gpu, f_gpu = solve_mgw(y[:4096], eps=EPS)
    x_cpu, f_cpu = solve_mgw(head, eps=EPS)
    assert torch.equal(x_gpu.cpu(), x_cpu) and torch.equal(f_gpu.cpu(), f_cpu)  # correct before timing

    def run():
        solve_mgw(y, eps=EPS)
        torch.cuda.synchronize()

    benchmark.group = f"mgw cuda C={C} batch={batch}"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        solve_mgw(y, eps=EPS)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    gpu = float(np.median(times)) / batch
    cpu_rows = host[:65536]
    cpu = timed(lambda: solve_mgw(cpu_rows, eps=EPS), repeats=3) / len(cpu_rows)
    ratios.add(benchmark.group, "modelguard_fast (cuda, CUDA events)", gpu)
    ratios.add(benchmark.group, f"reference: modelguard_fast (cpu, {mgf.kernel_threads()} threads, 65536 rows)", cpu,
               reference=True)
    benchmark.extra_info.update(rows_per_second=1.0 / gpu, cpu_rows_per_second=1.0 / cpu)
