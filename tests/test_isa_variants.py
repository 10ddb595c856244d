"""The x86-64-v3 (AVX2) module gives the baseline module's answers bit for bit.

The kernels are compiled twice from the same sources (CMakeLists.txt): _C for
the x86-64 baseline and _C_avx2 for x86-64-v3, with 32-byte vectors and no
multiply-add contraction; modelguard_fast._kernels imports the best one the
CPU runs. Both are loaded here and fed the same adversarial rows: the row
check (valid rows, NaN, +-inf, negative entries, -0.0, sums one rounding
inside and outside the tolerance, ties for the top class), the checked copy,
ModelGuard-S's quantize (both orders) and codebook search, ModelGuard-W and
the Bayes matcher (every scan the CPU runs). Every output, and every error
report, must be identical.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast import _kernels
from mgw_rows import sweep_rows
from streams import classifier_like, dirichlet

pytestmark = pytest.mark.skipif(
    "x86-64-v3" not in _kernels.built_isas() or not _kernels.load("baseline").cpu_runs("x86-64-v3"),
    reason="needs the x86-64-v3 module (an x86-64 build) and a CPU with AVX2, FMA and BMI2",
)

SUM_TOL = 1e-3
WIDTHS = [1, 2, 3, 7, 8, 9, 10, 16, 17, 31, 33, 100, 257]


@pytest.fixture(scope="module")
def modules():
    return _kernels.load("baseline"), _kernels.load("x86-64-v3")


def same_bits(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=what)


def same_report(a, b):
    """Two (row, code, column, value) reports of the first bad row are equal, the value bit for bit."""
    return a[:3] == b[:3] and np.float64(a[3]).tobytes() == np.float64(b[3]).tobytes()


def valid_rows(C, dtype, seed):
    """Classifier-like and Dirichlet rows, ties for the top class, zeros and -0.0, one-hot rows and
    rows whose sum is one rounding inside the tolerance."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([classifier_like(40, C, seed=seed, dtype=dtype), dirichlet(40, C, seed=seed + 1, dtype=dtype)])
    tied = rows[:10].copy()
    tied[:, : min(C, 3)] = tied.max(axis=1, keepdims=True)
    tied /= tied.sum(axis=1, keepdims=True)
    signed = rows[10:20].copy()
    zeroed = rng.random(signed.shape) < 0.3
    zeroed[np.arange(len(signed)), signed.argmax(axis=1)] = False
    signed[zeroed] = -0.0
    signed /= signed.sum(axis=1, keepdims=True)  # keeps the -0.0s
    one_hot = np.zeros((C, C), dtype)
    one_hot[np.arange(C), rng.permutation(C)] = 1
    zeros_and_negzeros = np.where(rng.random((4, C)) < 0.5, dtype(0.0), dtype(-0.0)).astype(dtype)
    zeros_and_negzeros[:, -1] = 1
    edge = rows[20:30].astype(np.float64)
    edge[:, 0] += 1 + SUM_TOL * 0.999 - edge.sum(axis=1)
    edge = np.clip(edge, 0, None).astype(dtype)
    return np.ascontiguousarray(np.concatenate([rows, tied.astype(dtype), signed, one_hot, zeros_and_negzeros, edge]))


def bad_rows(C, dtype, seed):
    """Rows with one bad entry each (NaN, +inf, -inf, a negative value, a denormal negative) at
    varied columns, and rows whose sum misses the tolerance by a little or a lot."""
    rng = np.random.default_rng(seed)
    base = dirichlet(12, C, seed=seed, dtype=dtype)
    out = []
    for bad in (np.nan, np.inf, -np.inf, -1e-3, -np.finfo(dtype).tiny / 4):
        for col in {0, C // 2, C - 1}:
            row = base[rng.integers(len(base))].copy()
            row[col] = bad
            out.append(row)
    for scale in (1 + 2 * SUM_TOL, 1 - 2 * SUM_TOL, 3.0, 0.0):
        out.append(base[rng.integers(len(base))] * dtype(scale))
    return [np.ascontiguousarray(r[None]) for r in out]


def check_both(modules, name, x, *outputs):
    """Runs kernel `name` of both modules on x with fresh copies of `outputs`; asserts equal results."""
    results = []
    for module in modules:
        outs = [o.copy() for o in outputs]
        results.append((getattr(module, name)(x, SUM_TOL, *outs), outs))
    (r0, o0), (r1, o1) = results
    assert same_report(r0, r1), (name, r0, r1)
    for a, b in zip(o0, o1):
        same_bits(a, b, name)
    return r0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", WIDTHS)
def test_row_check_and_checked_copy(modules, C, dtype):
    suffix = "f32" if dtype == np.float32 else "f64"
    x = valid_rows(C, dtype, seed=C)
    assert check_both(modules, f"check_rows_{suffix}", x, np.empty(len(x), np.int64))[0] == -1
    assert check_both(modules, f"check_copy_rows_{suffix}", x, np.empty_like(x))[0] == -1
    for row in bad_rows(C, dtype, seed=C):
        batch = np.ascontiguousarray(np.concatenate([x[:5], row, x[5:9]]))
        assert check_both(modules, f"check_rows_{suffix}", batch, np.empty(len(batch), np.int64))[0] == 5
        assert check_both(modules, f"check_copy_rows_{suffix}", batch, np.empty_like(batch))[0] == 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,eps", [(3, 0.05), (10, 1.0), (10, 0.2), (100, 1.0), (257, 0.5)])
def test_modelguard_s_quantize_and_search(modules, C, eps, dtype):
    stream = np.concatenate([classifier_like(3000, C, seed=C, dtype=dtype), dirichlet(1000, C, seed=C, dtype=dtype)])
    stream = np.ascontiguousarray(np.concatenate([stream, stream[::7]]))  # exact repeats
    name = "Codebooks32" if dtype == np.float32 else "Codebooks64"
    for mode in (0, 1):  # first admissible, nearest
        stores = [getattr(m, name)(C) for m in modules]
        for start in range(0, len(stream), 512):
            batch = stream[start : start + 512]
            answers = []
            for store in stores:
                out = np.empty_like(batch)
                answers.append((store.quantize(batch, eps, mode, SUM_TOL, out), out))
            (r0, o0), (r1, o1) = answers
            same_bits(o0, o1, f"quantize mode {mode}")
            assert r0[:2] == r1[:2] and np.array(r0[2:4]).tobytes() == np.array(r1[2:4]).tobytes()
            assert (r0[4] is None) == (r1[4] is None)
            if r0[4] is not None:
                same_bits(r0[4][0], r1[4][0], "appended classes")
                same_bits(r0[4][1], r1[4][1], "appended rows")
        assert stores[0].counts() == stores[1].counts()
        bad = bad_rows(C, dtype, seed=1)[0]
        results = [s.quantize(np.concatenate([stream[:3], bad]), eps, mode, SUM_TOL, np.empty((4, C), dtype))
                   for s in stores]
        assert same_report(results[0][1], results[1][1]) and results[0][1][0] == 3
        assert stores[0].counts() == stores[1].counts()
    codebook, offsets = stores[0].pack()
    queries = np.ascontiguousarray(np.concatenate([stream[::5], valid_rows(C, dtype, seed=2)]))
    top = queries.argmax(axis=1)
    search = "search_packed_f32" if dtype == np.float32 else "search_packed_f64"
    for mode in (0, 1, 2):
        found = []
        for module in modules:
            index, distance = np.empty(len(queries), np.int64), np.empty(len(queries), dtype)
            getattr(module, search)(queries, top, codebook, offsets, eps, mode, index, distance)
            found.append((index, distance))
        same_bits(found[0][0], found[1][0], f"search index mode {mode}")
        same_bits(found[0][1], found[1][1], f"search distance mode {mode}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [2, 3, 9, 10, 33, 100, 257])
def test_modelguard_w(modules, C, dtype):
    x = np.ascontiguousarray(sweep_rows(C, 120, seed=C).astype(dtype))
    eps = np.array([0.0, 0.05, 0.5, 1.0, 2.0])
    solve = "mgw_solve_f32" if dtype == np.float32 else "mgw_solve_f64"
    for simd in (True, False):
        results = []
        for module in modules:
            out, feasible = np.empty((len(x), eps.size, C), dtype), np.empty((len(x), eps.size), np.bool_)
            results.append((getattr(module, solve)(x, eps, 1e-4, 1e-6, SUM_TOL, out, feasible, simd=simd), out, feasible))
        assert same_report(results[0][0], results[1][0]) and results[0][0][0] == -1
        same_bits(results[0][1], results[1][1], f"mgw answers simd={simd}")
        same_bits(results[0][2], results[1][2], f"mgw feasible simd={simd}")
    bad = np.ascontiguousarray(np.concatenate([x[:4], bad_rows(C, dtype, seed=3)[3]]))
    reports = [getattr(m, solve)(bad, eps, 1e-4, 1e-6, SUM_TOL, np.empty((5, eps.size, C), dtype),
                                 np.empty((5, eps.size), np.bool_)) for m in modules]
    assert same_report(reports[0], reports[1]) and reports[0][0] == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 10, 100])
def test_bayes_matcher(modules, C, dtype):
    clean = np.ascontiguousarray(dirichlet(3000, C, seed=C, alpha=0.5, dtype=dtype))
    pert = np.ascontiguousarray(np.round(clean, 2).astype(dtype))
    clean_top = clean.argmax(axis=1)
    received = np.ascontiguousarray(np.concatenate([pert[::3], np.round(dirichlet(500, C, seed=C + 1, dtype=dtype), 2)]))
    received_top = received.argmax(axis=1)
    name = "BayesIndex32" if dtype == np.float32 else "BayesIndex64"
    indexes = [getattr(m, name)(clean, pert, clean_top) for m in modules]
    isas = modules[0].bayes_isas()
    assert isas == modules[1].bayes_isas()
    for isa in isas:
        for grouped in (False, True):
            for top in (received_top, None):
                results = []
                for index in indexes:
                    out, count = np.empty(received.shape, np.float64), np.empty(len(received), np.int64)
                    index.match(received, top, 0.05, grouped, isa, out, count)
                    results.append((out, count))
                same_bits(results[0][0], results[1][0], f"bayes isa {isa} grouped {grouped}")
                same_bits(results[0][1], results[1][1], f"bayes counts isa {isa} grouped {grouped}")
                assert results[0][1].max() > 0


def run_with_isa(value):
    code = "import modelguard_fast as m; print(m.kernel_isa())"
    env = {**os.environ, _kernels.ISA_VARIABLE: value}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_the_environment_variable_chooses_the_module():
    assert mgf.kernel_isa() == ("x86-64-v3" if os.environ.get(_kernels.ISA_VARIABLE, "auto") == "auto"
                                else os.environ[_kernels.ISA_VARIABLE])
    for value in ("baseline", "x86-64-v3", "auto"):
        done = run_with_isa(value)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == ("x86-64-v3" if value == "auto" else value)
    wrong = run_with_isa("avx9")
    assert wrong.returncode != 0
    assert ("ValueError: MODELGUARD_FAST_ISA must be 'auto' or one of 'baseline', 'x86-64-v3'; got 'avx9'"
            in wrong.stderr)
    with pytest.raises(ValueError, match="isa must be one of 'baseline', 'x86-64-v3'; got 'sse9'"):
        _kernels.load("sse9")
    with pytest.raises(ValueError, match="isa: expected 'baseline' or 'x86-64-v3', got 'sse9'"):
        _kernels.load("baseline").cpu_runs("sse9")
