"""Partial Bayes matching: the compiled matcher against two torch references.

Run with ``pytest --benchmark-only benchmarks/bench_bayes.py``. The problem is
the paper's: B received predictions (a continuous defense, Reverse Sigmoid,
applied to classifier-like predictions) matched against an N-row table of
Dirichlet draws (precision 8C, N / B per prediction) pushed through the same
defense, with the top-1 class filter and delta = 0.01. Compared in the same
run, on the same data:

- compiled: ``BayesTable.recover`` (method "general"), table prepared once;
- loop: the public code's approach, re-written: class-filtered tables built
  once, then per received row the L1 distances to the class's rows, the
  tolerance and a masked mean. The public code calls
  ``torch.norm(r - table, p=1, dim=1)``; on this CPU build of torch that is
  about 40 times slower than the equal ``(table - r).abs().sum(dim=1)``, which
  is used instead so the reference is not handicapped. Only LOOP_QUERIES rows
  are timed and the time is extrapolated linearly to B rows (the per-row cost
  does not depend on B);
- cdist: a vectorised torch version, per class and in chunks of received
  rows: ``torch.cdist(p=1)``, min, mask, float64 mask @ clean.

A discrete defense (ModelGuard-S, eps = 1, its frozen offline map for the
table, rows beyond eps dropped) times the grouped path against the general one.

Sizes (environment variables; defaults are the issue's sizes):
  MGF_BAYES_QUERIES        B, received rows (50000)
  MGF_BAYES_ROWS           N, table rows (1000000)
  MGF_BAYES_CLASSES        C values, comma-separated (10,100; plus 256 on a GPU)
  MGF_BAYES_LOOP_QUERIES   rows timed for the loop reference (200)
  MGF_BAYES_CDIST_QUERIES  rows timed for the cdist reference (0 = all B)
  MGF_BAYES_ROUNDS         rounds of the compiled matcher (3)
  MGF_BAYES_CPU_GHZ        clock used for the SIMD peak (2.1, this machine's base clock)
  MGF_BAYES_DEVICES        devices to time (cpu,cuda; cuda only where a GPU is visible);
                           the ModelGuard-S comparison runs with cpu

A summary (times, ratios, element-distance operations per second against the
SIMD peak) is printed at the end of the module and kept in each benchmark's
extra_info.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from modelguard_fast.ops import BayesTable
from modelguard_fast.ops.bayes import cpu_instruction_sets


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


QUERIES = _env_int("MGF_BAYES_QUERIES", 50_000)
ROWS = _env_int("MGF_BAYES_ROWS", 1_000_000)
LOOP_QUERIES = _env_int("MGF_BAYES_LOOP_QUERIES", 200)
CDIST_QUERIES = _env_int("MGF_BAYES_CDIST_QUERIES", 0)
ROUNDS = _env_int("MGF_BAYES_ROUNDS", 3)
CPU_GHZ = float(os.environ.get("MGF_BAYES_CPU_GHZ", 2.1))
DELTA = 0.01
HAS_GPU = mgf.cuda_available()
CLASSES = [int(c) for c in os.environ.get("MGF_BAYES_CLASSES", "10,100,256" if HAS_GPU else "10,100").split(",")]
# Reverse Sigmoid beta per C, from the paper's settings (max L1 distortion about 1).
BETA = {10: 0.21, 100: 0.02, 256: 0.008}
# Elements of one cdist chunk (received rows x class rows).
CDIST_CHUNK = 1 << 24

SUMMARY: dict[tuple, dict] = {}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reverse_sigmoid(y: np.ndarray, beta: float, gamma: float = 0.2) -> np.ndarray:
    """Reverse Sigmoid with ART's clipping, in float64."""
    p = np.clip(y, 1e-9, 1 - 1e-9)
    r = beta * (1 / (1 + np.exp(-gamma * np.log(p / (1 - p)))) - 0.5)
    out = np.clip(y - r, 0, 1)
    return out / out.sum(axis=1, keepdims=True)


class Problem:
    """Clean predictions y (B x C), the table (N x C) and the received rows, float32."""

    def __init__(self, C: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.C = C
        logits = rng.standard_normal((QUERIES, C)) * 1.5
        logits[np.arange(QUERIES), rng.integers(0, C, QUERIES)] += 4.0
        self.y = softmax(logits)
        K = max(1, ROWS // QUERIES)
        self.clean = np.empty((K * QUERIES, C), dtype=np.float32)
        step = max(1, 200_000 // K)
        for s in range(0, QUERIES, step):
            alpha = np.repeat(self.y[s:s + step], K, axis=0) * (8 * C)
            g = rng.standard_gamma(alpha)
            self.clean[s * K:(s + step) * K] = g / g.sum(axis=1, keepdims=True)
        self.order = rng.permutation(QUERIES)  # the timed subsets of the references

    def continuous(self) -> tuple[np.ndarray, np.ndarray]:
        beta = BETA.get(self.C, 0.02)
        pert = np.empty_like(self.clean)
        for s in range(0, len(pert), 200_000):
            pert[s:s + 200_000] = reverse_sigmoid(self.clean[s:s + 200_000].astype(np.float64), beta)
        return pert, reverse_sigmoid(self.y, beta).astype(np.float32)

    def modelguard_s(self, eps: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        defense = mgf.ModelGuardS(self.C, eps=eps)
        received = defense(self.y.astype(np.float32))
        frozen = defense.frozen()
        pert = np.empty_like(self.clean)
        for s in range(0, len(pert), 200_000):
            pert[s:s + 200_000] = frozen(self.clean[s:s + 200_000])
        keep = np.abs(pert.astype(np.float64) - self.clean).sum(axis=1) <= eps
        return self.clean[keep], pert[keep], received, defense.num_centroids


class TorchTable:
    """The table split by clean top-1 class, as both torch references use it."""

    def __init__(self, clean: np.ndarray, pert: np.ndarray, device: str):
        top = clean.argmax(axis=1)
        C = clean.shape[1]
        self.device = device
        self.clean = [torch.from_numpy(clean[top == c]).to(device) for c in range(C)]
        self.pert = [torch.from_numpy(pert[top == c]).to(device) for c in range(C)]
        self.sizes = np.bincount(top, minlength=C)

    def loop(self, received: torch.Tensor) -> torch.Tensor:
        out = torch.empty(received.shape, dtype=torch.float64, device=received.device)
        for i, c in enumerate(received.argmax(dim=1).tolist()):
            pert, clean = self.pert[c], self.clean[c]
            if len(pert) == 0:
                out[i] = received[i]
                continue
            d = (pert - received[i]).abs().sum(dim=1)
            tol = max(DELTA, d.min().item())
            out[i] = clean[d <= tol].double().mean(dim=0)
        return out

    def cdist(self, received: torch.Tensor) -> torch.Tensor:
        out = received.double().clone()
        top = received.argmax(dim=1)
        for c in range(len(self.pert)):
            rows = torch.nonzero(top == c).flatten()
            pert, clean = self.pert[c], self.clean[c].double()
            if len(rows) == 0 or len(pert) == 0:
                continue
            chunk = max(1, CDIST_CHUNK // len(pert))
            for s in range(0, len(rows), chunk):
                idx = rows[s:s + chunk]
                d = torch.cdist(received[idx], pert, p=1)
                tol = d.min(dim=1).values.clamp(min=DELTA)
                mask = (d <= tol[:, None]).double()
                out[idx] = (mask @ clean) / mask.sum(dim=1, keepdim=True)
        return out

    def work(self, received: np.ndarray) -> int:
        """Element-distance operations of a full scan: candidate rows x C, summed over received rows."""
        return int(self.sizes[received.argmax(axis=1)].sum()) * received.shape[1]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_ops() -> float:
    lanes = 16 if "avx512" in cpu_instruction_sets() else 8 if "avx2" in cpu_instruction_sets() else 4
    return (os.cpu_count() or 1) * lanes * CPU_GHZ * 1e9


def record(key: tuple, **values) -> None:
    SUMMARY.setdefault(key, {}).update(values)


DEVICES = [d for d in os.environ.get("MGF_BAYES_DEVICES", "cpu,cuda").split(",") if d == "cpu" or HAS_GPU]


@pytest.fixture(scope="module", params=CLASSES, ids=lambda c: f"C{c}")
def problem(request):
    return Problem(request.param)


@pytest.fixture(scope="module")
def continuous(problem):
    pert, received = problem.continuous()
    start = time.perf_counter()
    table = BayesTable(problem.clean, pert)
    table.recover(received[:1], delta=DELTA, method="general")  # builds the blocked layout
    prepare_s = time.perf_counter() - start
    return problem, table, pert, received, prepare_s


@pytest.fixture(scope="module")
def torch_tables(continuous):
    problem, _, pert, _, _ = continuous
    return {device: TorchTable(problem.clean, pert, device) for device in DEVICES}


@pytest.fixture(scope="module", autouse=True)
def print_summary(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"Partial Bayes matching: B={QUERIES} received rows, N~{ROWS} table rows, delta={DELTA}, top-1 filter; "
             f"CPU: {os.cpu_count()} cores, peak {peak_ops() / 1e9:.1f} G element-ops/s "
             f"(cores x {int(peak_ops() / (os.cpu_count() or 1) / CPU_GHZ / 1e9)} float32 lanes x {CPU_GHZ} GHz)"]
    for (kind, C, device), v in sorted(SUMMARY.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        parts = [f"{kind} C={C} {device}:"]
        parts += [f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in v.items()]
        if kind == "continuous" and "compiled_s" in v:
            for ref in ("loop_s", "cdist_s"):
                if ref in v:
                    parts.append(f"{ref[:-2]}/compiled={v[ref] / v['compiled_s']:.1f}x")
        if kind == "modelguard_s" and "grouped_s" in v and "general_s" in v:
            parts.append(f"general/grouped={v['general_s'] / v['grouped_s']:.0f}x")
        lines.append(" ".join(parts))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_sep("-", "bench_bayes summary")
            for line in lines:
                reporter.write_line(line)


def _check_against(expected: np.ndarray, got: np.ndarray, what: str) -> None:
    # Different summation orders can flip a row lying within rounding of tol; allow a few such rows.
    bad = np.abs(got - expected).max(axis=1) > 1e-5
    assert bad.mean() <= 0.002, f"{what}: {bad.sum()} of {len(bad)} rows differ"


@pytest.mark.benchmark(group="bayes-continuous")
@pytest.mark.parametrize("device", DEVICES)
def test_compiled(benchmark, continuous, torch_tables, device):
    problem, table, _, received, prepare_s = continuous
    x = torch.from_numpy(received).to(device)
    subset = problem.order[:LOOP_QUERIES]
    expected = torch_tables[device].loop(x[torch.from_numpy(subset).to(device)]).cpu().numpy()
    _check_against(expected, table.recover(x[torch.from_numpy(subset).to(device)], method="general").cpu().numpy()
                   .astype(np.float64), "compiled vs loop")

    def run():
        out = table.recover(x, delta=DELTA, method="general")
        sync(device)
        return out

    run()  # device copies of the table are made on first use
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    seconds = benchmark.stats.stats.min
    work = torch_tables[device].work(received)
    info = dict(compiled_s=seconds, prepare_s=prepare_s, us_per_query=seconds / QUERIES * 1e6,
                element_ops_per_s=work / seconds)
    if device == "cpu":
        info["fraction_of_peak"] = work / seconds / peak_ops()
    benchmark.extra_info.update(info)
    record(("continuous", problem.C, device), **info)


@pytest.mark.benchmark(group="bayes-continuous")
@pytest.mark.parametrize("device", DEVICES)
def test_loop_reference(benchmark, continuous, torch_tables, device):
    problem, _, _, received, _ = continuous
    subset = torch.from_numpy(received[problem.order[:LOOP_QUERIES]]).to(device)

    def run():
        out = torch_tables[device].loop(subset)
        sync(device)
        return out

    benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.min * QUERIES / len(subset)
    benchmark.extra_info.update(timed_queries=len(subset), extrapolated_s=seconds)
    record(("continuous", problem.C, device), loop_s=seconds, loop_timed_queries=len(subset))


@pytest.mark.benchmark(group="bayes-continuous")
@pytest.mark.parametrize("device", DEVICES)
def test_cdist_reference(benchmark, continuous, torch_tables, device):
    problem, table, _, received, _ = continuous
    count = CDIST_QUERIES or QUERIES
    rows = problem.order[:count] if count < QUERIES else np.arange(QUERIES)
    x = torch.from_numpy(received[rows]).to(device)
    check = torch_tables[device].cdist(x[:LOOP_QUERIES]).cpu().numpy()
    _check_against(table.recover(received[rows[:LOOP_QUERIES]], method="general").astype(np.float64), check,
                   "cdist vs compiled")

    def run():
        out = torch_tables[device].cdist(x)
        sync(device)
        return out

    benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.min * QUERIES / count
    benchmark.extra_info.update(timed_queries=count, extrapolated_s=seconds)
    record(("continuous", problem.C, device), cdist_s=seconds, cdist_timed_queries=count)


@pytest.fixture(scope="module")
def discrete(problem):
    if "cpu" not in DEVICES:
        pytest.skip("MGF_BAYES_DEVICES leaves out the CPU")
    clean, pert, received, centroids = problem.modelguard_s()
    table = BayesTable(clean, pert)
    return problem, table, received, centroids


@pytest.mark.benchmark(group="bayes-modelguard-s")
@pytest.mark.parametrize("method", ["general", "grouped"])
def test_modelguard_s(benchmark, discrete, method):
    problem, table, received, centroids = discrete
    start = time.perf_counter()
    first = table.recover(received, delta=DELTA, method=method)  # builds the layout or the groups
    first_s = time.perf_counter() - start
    if method == "grouped":
        general = table.recover(received, delta=DELTA, method="general")
        np.testing.assert_allclose(first, general, rtol=0, atol=1e-6)
    benchmark.pedantic(lambda: table.recover(received, delta=DELTA, method=method), rounds=ROUNDS, iterations=1)
    seconds = benchmark.stats.stats.min
    info = {f"{method}_s": seconds, f"{method}_first_call_s": first_s, "table_rows": table.num_rows,
            "centroids": centroids, "groups": table.num_groups()}
    benchmark.extra_info.update(info)
    record(("modelguard_s", problem.C, "cpu"), **info)
