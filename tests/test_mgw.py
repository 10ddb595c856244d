"""ModelGuard-W: the exact LP solver against HiGHS, its properties, and its API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import modelguard_fast as mgf
from modelguard_fast.ops import solve_mgw
from modelguard_fast._kernels import C as kernels  # the compiled module in use
from mgw_rows import sweep_rows

pytest.importorskip("highspy", reason="highspy (the test extra) is the reference these tests prove against")
from reference_mgw import constraint_violation, new_highs, objective, solve_highs  # noqa: E402

MARGIN = 1e-4
SHIFT = 1e-6
EPS_GRID = (0.0, 1e-3, 0.25, 0.5, 0.75, 1.0, 1.5, 1.99, 2.0)
MARGINS = (0.0, 1e-4)
# Rows per class count in the sweep against HiGHS; each row is solved for
# every budget of EPS_GRID and every margin of MARGINS. Most rows are small
# (HiGHS takes ~0.1 s per C = 1000 instance here).
SWEEP_ROWS = {2: 45, 3: 45, 5: 45, 10: 65, 100: 50, 256: 25, 1000: 3}
OBJECTIVE_TOL = 1e-8
CONSTRAINT_TOL = 1e-12


def test_sweep_has_at_least_5000_instances():
    assert sum(SWEEP_ROWS.values()) * len(EPS_GRID) * len(MARGINS) >= 5000


@pytest.mark.parametrize("C", sorted(SWEEP_ROWS))
def test_optimal_against_highs(C):
    y = sweep_rows(C, SWEEP_ROWS[C], seed=1000 + C)
    highs = new_highs()
    for margin in MARGINS:
        x, feasible = solve_mgw(y, eps=list(EPS_GRID), margin=margin, log_shift=SHIFT)
        for i, row in enumerate(y):
            for e, eps in enumerate(EPS_GRID):
                ref = solve_highs(row, eps, margin, SHIFT, highs=highs)
                where = f"C={C} row {i} eps={eps} margin={margin} y={row.tolist()}"
                assert bool(feasible[i, e]) == ref.feasible, where
                if not ref.feasible:
                    np.testing.assert_array_equal(x[i, e], row, err_msg=where)
                    continue
                violation = constraint_violation(x[i, e], row, eps, margin)
                assert max(violation.values()) <= CONSTRAINT_TOL, (where, violation)
                gap = objective(x[i, e], row, SHIFT) - ref.objective
                assert gap <= OBJECTIVE_TOL, (where, gap)


# --------------------------------------------------------------- known optima
@pytest.mark.parametrize(
    "y, eps, expected",
    [
        # A middle class is drained to 0 and the budget is not used up (L1 = 0.9).
        ((0.5, 0.45, 0.05), 1.0, (0.5 + MARGIN / 2, 0.0, 0.5 - MARGIN / 2)),
        # The top class goes up.
        ((0.31, 0.30, 0.29, 0.10), 1.2, (0.5 + MARGIN / 2, 0.0, 0.0, 0.5 - MARGIN / 2)),
        # x_t = 0.4: the top class gives eps/2 to the two cheapest classes.
        ((0.9, 0.05, 0.03, 0.01, 0.005, 0.003, 0.001, 0.0005, 0.0003, 0.0002), 1.0,
         (0.4, 0.05, 0.03, 0.01, 0.005, 0.003, 0.001, 0.0005, 0.1006, 0.4 - MARGIN)),
        # The simple picture holds when y_t >= eps + y_min + margin.
        ((0.9, 0.07, 0.03), 0.2, (0.8, 0.07, 0.13)),
    ],
)
def test_counterexamples_from_the_notes(y, eps, expected):
    y = np.asarray(y)
    x, feasible = solve_mgw(y, eps=eps)
    assert feasible
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12)
    ref = solve_highs(y, eps, MARGIN, SHIFT)
    assert objective(x, y, SHIFT) == pytest.approx(ref.objective, abs=1e-12)


@pytest.mark.parametrize("yt", [0.5, 0.50004, 0.6, 0.8, 0.99, 1.0])
@pytest.mark.parametrize("eps", [0.0, 1e-4, 0.1, 0.5, 1.0, 2.0])
def test_two_classes_closed_form(yt, eps):
    y = np.array([1.0 - yt, yt])
    top = int(np.argmax(y))  # class 0 when yt = 0.5
    x, feasible = solve_mgw(y, eps=eps)
    level = max((1 + MARGIN) / 2, yt - eps / 2)
    if abs(level - yt) > eps / 2 + 1e-15:  # the margin cannot be opened within the budget
        assert not feasible
        np.testing.assert_array_equal(x, y)
    else:
        assert feasible
        np.testing.assert_allclose(x[top], level, rtol=0, atol=1e-15)
        np.testing.assert_allclose(x[1 - top], 1 - level, rtol=0, atol=1e-15)


def test_zero_budget_keeps_rows_whose_margin_holds():
    y = sweep_rows(10, 40, seed=7)
    x, feasible = solve_mgw(y, eps=0.0)
    sorted_rows = np.sort(y, axis=1)
    holds = sorted_rows[:, -1] - sorted_rows[:, -2] >= MARGIN
    np.testing.assert_array_equal(feasible, holds)
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-15)


def test_budgets_above_two_are_refused():
    # No two distributions are farther apart than 2 in L1: 2 already allows any answer, and a larger
    # budget is refused (modelguard_fast.params) rather than silently meaning 2.
    y = sweep_rows(100, 30, seed=8)
    x, _ = solve_mgw(y, eps=[1.99, 2.0])
    np.testing.assert_array_equal(x[:, 1], solve_mgw(y, eps=2.0)[0])
    with pytest.raises(ValueError, match=r"eps\[1\] must be in \[0, 2\] .*got 3.0"):
        solve_mgw(y, eps=[2.0, 3.0])


@pytest.mark.parametrize("C", [2, 3, 10, 1000])
def test_infeasible_top_tie_returned_unchanged(C):
    y = np.zeros(C)
    y[[0, C - 1]] = 0.5
    # Opening a two-way tie to the margin moves margin / 2 each way: L1 = margin.
    x, feasible = solve_mgw(y, eps=[0.0, 0.5 * MARGIN, 2 * MARGIN], margin=MARGIN)
    np.testing.assert_array_equal(feasible, [False, False, True])
    np.testing.assert_array_equal(x[0], y)
    np.testing.assert_array_equal(x[1], y)
    assert np.isfinite(x).all()
    assert x[2, 0] - x[2, C - 1] >= MARGIN - 1e-15


def assert_ties_broken_by_index(x: np.ndarray, y: np.ndarray) -> None:
    """Among other classes with equal y, x does not increase with the class index: the
    fill (cheapest first) reaches the lower index first and the drain (most expensive
    first) the higher index first."""
    top = int(np.argmax(y))
    for value in np.unique(y):
        group = [k for k in np.flatnonzero(y == value) if k != top]
        assert np.all(np.diff(x[group]) <= 0), (value, group, x[group])


@pytest.mark.parametrize("C", [12, 120])  # heapsort / radix sort, or the AVX-512 sort where the CPU has it
def test_ties_broken_by_class_index(C):
    # Every class but the top costs the same, so the optimum is not unique:
    # the mass the top class gives goes to the lowest class index.
    top = C // 2
    y = np.full(C, 0.5 / (C - 1))
    y[top] = 0.5
    x, feasible = solve_mgw(y, eps=0.2)
    assert feasible
    np.testing.assert_allclose(x[top], 0.4, rtol=0, atol=1e-15)
    others = np.delete(np.arange(C), top)
    raised = others[np.delete(x - y, top) > 1e-12]
    np.testing.assert_array_equal(raised, others[:1])
    assert_ties_broken_by_index(x, y)
    assert objective(x, y, SHIFT) == pytest.approx(solve_highs(y, 0.2, MARGIN, SHIFT).objective, abs=1e-12)


@pytest.mark.parametrize("C", [2, 3, 10, 100])
def test_one_hot_rows(C):
    # All other classes cost log(log_shift): the top class goes as low as the
    # budget and the caps allow, and its mass fills the others in class order.
    n = C - 1
    for top in (0, C - 1):
        y = np.zeros(C)
        y[top] = 1.0
        budgets = np.linspace(0.0, 2.0, 41)
        x, feasible = solve_mgw(y, eps=budgets)
        assert feasible.all()
        others = [k for k in range(C) if k != top]
        for e, budget in enumerate(budgets):
            level = max(1.0 - budget / 2, (1.0 + n * MARGIN) / (n + 1))
            expected = np.zeros(C)
            expected[top] = level
            left = 1.0 - level
            for k in others:
                expected[k] = min(left, level - MARGIN)
                left -= expected[k]
            np.testing.assert_allclose(x[e], expected, rtol=0, atol=1e-14, err_msg=f"eps={budget}")


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000, 3001])
def test_gpu_heap_sort_orders_by_value_then_index(n):
    # The CUDA kernel sorts every row with this heapsort; the CPU's portable path
    # uses it below 64 classes and a radix sort above (its AVX-512 path a sort of
    # packed keys, checked against the portable path below), so all give this order.
    rng = np.random.default_rng(n)
    for y in (rng.random(n), rng.choice([0.0, 0.1, 0.25, 1e-300], size=n), np.zeros(n)):
        np.testing.assert_array_equal(kernels._testing.mgw_heap_sort_order(y), np.lexsort((np.arange(n), y)))


def near_tie_rows(C: int, count: int, seed: int) -> np.ndarray:
    """Rows whose values agree in all but their last few bits (and some exact
    ties, zeros and -0.0): the CPU's packed-key sort must fix their order."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        y = rng.choice([1e-3, 0.004, 0.03], size=C) * (1.0 + rng.integers(0, 600, C) * 2.0**-52)
        y[rng.integers(C)] = 0.5
        if i % 3 == 1:
            y[rng.random(C) < 0.2] = -0.0
        rows.append(y / y.sum())
    return np.asarray(rows)


@pytest.mark.skipif("cpu-avx512" not in mgf.available_backends(), reason="no AVX-512 row preparation here")
def test_simd_block_log_gives_the_portable_logs_bits():
    # The CPU fills costs with a SIMD copy of mgw_log (fdlibm's log): every
    # branch of it (subnormals, |f| < 2^-20, both polynomial tails, k = 0 or
    # not) must give the portable function's bits.
    rng = np.random.default_rng(3)
    special = [5e-324, 1e-310, 2.2250738585072014e-308, 2.2250738585072009e-308, 0.5, 1.0, 2.0, 2.0**-1000,
               np.sqrt(0.5), np.sqrt(2.0), 1e-6, 1.000001, 0.999999, 1e300, np.finfo(np.float64).max]
    ones = 1.0 + rng.integers(-2**12, 2**12, 200) * 2.0**-52  # k = 0, |f| tiny
    powers = np.ldexp(1.0 + rng.integers(-8, 8, 200) * 2.0**-52, rng.integers(-1074, 1023, 200))
    high = np.array([0x6147A, 0x6B851, 0x95F64, 0x6A09E, 0xFFFFE, 0xFFFFF, 0x00001, 0x00002], dtype=np.uint64)
    words = (high[:, None] + np.arange(-2, 3, dtype=np.int64).astype(np.uint64)[None, :]) & np.uint64(0xFFFFF)
    exps = rng.integers(1, 2046, words.size).astype(np.uint64)
    edges = ((exps << np.uint64(52)) | (words.ravel() << np.uint64(32)) | rng.integers(0, 2**32, words.size).astype(np.uint64))
    values = np.concatenate([special, ones, powers, edges.view(np.float64), rng.random(1000), rng.random(1000) * 1e-6,
                             np.ldexp(rng.random(300), -1060)])
    assert np.all(values > 0) and np.all(np.isfinite(values))
    simd = kernels._testing.mgw_logs(values, True)
    portable = kernels._testing.mgw_logs(values, False)
    np.testing.assert_array_equal(simd.view(np.uint64), portable.view(np.uint64))
    np.testing.assert_allclose(portable, np.log(values), rtol=4e-16, atol=0)


@pytest.mark.skipif("cpu-avx512" not in mgf.available_backends(), reason="no AVX-512 row preparation here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [2, 3, 7, 8, 9, 10, 16, 17, 33, 64, 65, 100, 128, 129, 255, 256, 257, 1000])
def test_simd_and_portable_row_preparation_agree_bit_for_bit(dtype, C):
    # The AVX-512 path (packed-key sort, SIMD row sum) must give the bits of
    # the steps the GPU runs (heapsort, sequential prefix sums, the same lanes).
    y = np.concatenate([sweep_rows(C, 60, seed=5000 + C), near_tie_rows(C, 30, seed=6000 + C)]).astype(dtype)
    results = [solve_mgw(y, list(EPS_GRID), MARGIN, SHIFT, backend=backend) for backend in ("cpu-avx512", "cpu")]
    (x_simd, f_simd), (x_portable, f_portable) = results
    np.testing.assert_array_equal(f_simd, f_portable)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(x_simd.view(bits), x_portable.view(bits))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 100, 300])
@pytest.mark.parametrize("bad", ["nan", "inf", "negative", "sum", "sum_edge", "huge"])
def test_kernel_reports_the_first_bad_row_on_both_row_preparations(dtype, C, bad):
    # The CPU kernel checks rows as it solves them; its verdict must not depend
    # on the row preparation it runs.
    y = sweep_rows(C, 200, seed=7000 + C).astype(dtype)
    for row in (150, 170):
        if bad == "nan":
            y[row, 1] = np.nan
        elif bad == "inf":
            y[row, C - 1] = np.inf
        elif bad == "negative":
            y[row, C // 2] = -1e-30
        elif bad == "sum":
            y[row] *= 0.99
        elif bad == "sum_edge":  # just past the tolerance in the row's own dtype
            y[row, 0] += dtype(2e-3)
        else:
            y[row, 0] = np.finfo(dtype).max
    messages = []
    for backend in mgf.available_backends():
        if backend != "cuda":
            with pytest.raises(ValueError, match=r"row 150") as err:
                solve_mgw(y, 1.0, MARGIN, SHIFT, backend=backend)
            messages.append(str(err.value).replace("; pass renormalize=True to rescale rows", ""))
    with pytest.raises(ValueError) as err:  # the shared row check, as every defense runs it
        mgf.NoDefense()(y)
    assert set(messages) == {str(err.value)}


@pytest.mark.parametrize("spread", [1e-9, 1e-5])
def test_nearly_equal_values(spread):
    # Values that agree in their leading bits (long and short runs for the
    # CPU's radix sort to finish by comparison), with exact ties among them.
    rng = np.random.default_rng(15)
    y = 1.0 + spread * rng.integers(0, 6, 300)
    y[7] = 3.0
    y /= y.sum()
    for eps in (0.3, 1.0, 2.0):
        x, feasible = solve_mgw(y, eps=eps)
        ref = solve_highs(y, eps, MARGIN, SHIFT)
        assert feasible and ref.feasible
        assert objective(x, y, SHIFT) - ref.objective <= OBJECTIVE_TOL
        assert_ties_broken_by_index(x, y)


def test_one_class():
    x, feasible = solve_mgw(np.array([[1.0]]), eps=[0.0, 1.0])
    np.testing.assert_array_equal(x, [[[1.0], [1.0]]])
    assert feasible.all()


# ---------------------------------------------------------- property tests
@st.composite
def prediction_batches(draw, max_classes: int = 24, max_rows: int = 6):
    C = draw(st.integers(2, max_classes))
    B = draw(st.integers(1, max_rows))
    rows = []
    for _ in range(B):
        values = draw(st.lists(st.sampled_from([0.0, 1e-9, 0.01, 0.1, 0.25, 0.5, 1.0, 3.0])
                               | st.floats(0.0, 1.0), min_size=C, max_size=C))
        y = np.asarray(values, dtype=np.float64)
        if y.sum() == 0:
            y[draw(st.integers(0, C - 1))] = 1.0
        rows.append(y / y.sum())
    return np.asarray(rows)


budget_lists = st.lists(st.sampled_from(EPS_GRID) | st.floats(0.0, 2.0), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(y=prediction_batches(), eps=budget_lists, margin=st.sampled_from(MARGINS))
def test_batch_equals_row_by_row_and_sweep_equals_separate_calls(y, eps, margin):
    x, feasible = solve_mgw(y, eps=eps, margin=margin)
    for i, row in enumerate(y):
        row_x, row_feasible = solve_mgw(row, eps=eps, margin=margin)
        np.testing.assert_array_equal(row_x, x[i])
        np.testing.assert_array_equal(row_feasible, feasible[i])
    for e, budget in enumerate(eps):
        one_x, one_feasible = solve_mgw(y, eps=budget, margin=margin)
        np.testing.assert_array_equal(one_x, x[:, e])
        np.testing.assert_array_equal(one_feasible, feasible[:, e])


@settings(max_examples=200, deadline=None)
@given(y=prediction_batches(max_classes=40), eps=budget_lists, margin=st.sampled_from(MARGINS))
def test_constraints_hold_and_top1_is_kept(y, eps, margin):
    x, feasible = solve_mgw(y, eps=eps, margin=margin)
    assert np.isfinite(x).all()
    for i, row in enumerate(y):
        top = int(np.argmax(row))
        for e, budget in enumerate(eps):
            if not feasible[i, e]:
                np.testing.assert_array_equal(x[i, e], row)
                continue
            violation = constraint_violation(x[i, e], row, budget, margin)
            assert max(violation.values()) <= CONSTRAINT_TOL, violation
            assert_ties_broken_by_index(x[i, e], row)
            if margin > 0:
                assert int(np.argmax(x[i, e])) == top


@settings(max_examples=60, deadline=None)
@given(y=prediction_batches(max_classes=12, max_rows=2), eps=st.sampled_from(EPS_GRID) | st.floats(0.0, 2.0),
       margin=st.sampled_from(MARGINS))
def test_optimal_against_highs_on_generated_rows(y, eps, margin):
    x, feasible = solve_mgw(y, eps=eps, margin=margin)
    for i, row in enumerate(y):
        ref = solve_highs(row, eps, margin, SHIFT)
        assert bool(feasible[i]) == ref.feasible
        if ref.feasible:
            assert objective(x[i], row, SHIFT) - ref.objective <= OBJECTIVE_TOL


# ------------------------------------------------------------- arrays and API
def test_float32_rows_are_solved_in_float64():
    y64 = sweep_rows(100, 20, seed=9)
    y32 = y64.astype(np.float32)
    x32, f32 = solve_mgw(y32, eps=[0.25, 1.0])
    x64, f64 = solve_mgw(y32.astype(np.float64), eps=[0.25, 1.0])
    assert x32.dtype == np.float32
    np.testing.assert_array_equal(x32, x64.astype(np.float32))
    np.testing.assert_array_equal(f32, f64)


def test_shapes_single_row_and_sweep():
    y = sweep_rows(10, 4, seed=10)
    x, feasible = solve_mgw(y)
    assert x.shape == (4, 10) and feasible.shape == (4,) and feasible.dtype == np.bool_
    x, feasible = solve_mgw(y[0])
    assert x.shape == (10,) and feasible.shape == ()
    x, feasible = solve_mgw(y, eps=np.array([0.5, 1.0, 2.0]))
    assert x.shape == (4, 3, 10) and feasible.shape == (4, 3)
    x, feasible = solve_mgw(y[0], eps=(0.5, 1.0))
    assert x.shape == (2, 10) and feasible.shape == (2,)


def test_input_never_modified_read_only_and_strided_accepted():
    y = sweep_rows(10, 6, seed=11)
    expected, _ = solve_mgw(y.copy())
    frozen = y.copy()
    frozen.flags.writeable = False
    x, _ = solve_mgw(frozen)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(frozen, y)
    wide = np.zeros((6, 20))
    wide[:, ::2] = y
    x, _ = solve_mgw(wide[:, ::2])
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(wide[:, ::2], y)
    x, _ = solve_mgw(np.asfortranarray(y))
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out(dtype):
    y = sweep_rows(10, 5, seed=12)
    t = torch.tensor(y, dtype=dtype)
    before = t.clone()
    x, feasible = solve_mgw(t, eps=[0.5, 1.0])
    assert isinstance(x, torch.Tensor) and x.dtype == dtype and x.shape == (5, 2, 10)
    assert isinstance(feasible, torch.Tensor) and feasible.dtype == torch.bool
    expected, _ = solve_mgw(t.numpy(), eps=[0.5, 1.0])
    np.testing.assert_array_equal(x.numpy(), expected)
    assert torch.equal(t, before)
    single = mgf.ModelGuardW()(t[0])
    assert isinstance(single, torch.Tensor) and single.shape == (10,) and single.dtype == dtype


def test_renormalize():
    y = sweep_rows(10, 3, seed=13)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        solve_mgw(0.9 * y)
    x, _ = solve_mgw(0.9 * y, renormalize=True)
    np.testing.assert_allclose(x, solve_mgw(y)[0], rtol=0, atol=1e-15)


# ----------------------------------------------------------------- bad input
GOOD = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])


@pytest.mark.parametrize(
    "probs, error, match",
    [
        (np.array([[0.7, np.nan, 0.3]]), ValueError, r"probs must be finite, got nan at row 0, column 1"),
        (np.array([[0.7, np.inf, 0.3]]), ValueError, r"probs must be finite, got inf at row 0, column 1"),
        (np.array([[0.7, 0.4, -0.1]]), ValueError, r"probs must be non-negative probabilities, got -0.1 at row 0"),
        (np.array([[0.7, 0.2, 0.1], [0.5, 0.2, 0.1]]), ValueError, r"rows must sum to 1 .* row 1 sums to 0.79999"),
        (np.full((2, 2, 2), 0.5), ValueError, r"probs must be 1-D \(C,\) or 2-D \(B, C\), got shape \(2, 2, 2\)"),
        (np.empty((0, 3)), ValueError, r"probs must hold at least one prediction, got an empty batch"),
        (np.array([[1, 0, 0]]), TypeError, r"probs must have dtype float32 or float64, got int64"),
        (GOOD.astype(np.complex64), TypeError, r"probs must have dtype float32 or float64, got complex64"),
        (torch.tensor(GOOD).to(torch.int16), TypeError, r"probs must have dtype float32 or float64, got torch.int16"),
        (torch.tensor([[1, 0, 0]]), TypeError, r"probs must have dtype float32 or float64, got torch.int64"),
        ([[0.7, 0.2, 0.1]], TypeError, r"probs: expected a numpy array, torch tensor or cupy array, got list"),
    ],
)
def test_bad_probs(probs, error, match):
    with pytest.raises(error, match=match):
        solve_mgw(probs)
    defense = mgf.ModelGuardW()
    with pytest.raises(error, match=match):
        defense(probs)
    assert defense.num_queries == 0 and defense.num_infeasible == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"eps": -0.1}, ValueError, r"eps must be in \[0, 2\] .*got -0.1"),
        ({"eps": 2.5}, ValueError, r"eps must be in \[0, 2\] .*got 2.5"),
        ({"eps": math.nan}, ValueError, r"eps must be finite, got nan"),
        ({"eps": True}, TypeError, r"eps must be a real number, got True"),
        ({"eps": "1"}, TypeError, r"eps must hold real numbers, got dtype <U1"),
        ({"eps": []}, ValueError, r"eps must be a number or a non-empty 1-D sequence, got shape \(0,\)"),
        ({"eps": [[0.5, 1.0]]}, ValueError, r"eps must be a number or a non-empty 1-D sequence, got shape \(1, 2\)"),
        ({"eps": [0.5, -1.0]}, ValueError, r"eps\[1\] must be in \[0, 2\] .*got -1.0"),
        ({"eps": [0.5, math.inf]}, ValueError, r"eps\[1\] must be finite, got inf"),
        ({"margin": 1.0}, ValueError, r"margin must be in \[0, 1\), got 1.0"),
        ({"margin": -1e-4}, ValueError, r"margin must be in \[0, 1\), got -0.0001"),
        ({"log_shift": 0.0}, ValueError, r"log_shift must be > 0 .*, got 0.0"),
        ({"log_shift": "1e-6"}, TypeError, r"log_shift must be a real number, got '1e-6' of type str"),
        ({"sum_tol": -1.0}, ValueError, r"sum_tol must be in \[0, 1\) .*got -1.0"),
        ({"renormalize": 1}, TypeError, r"renormalize must be a bool, got 1"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        solve_mgw(GOOD, **kwargs)


def test_defense_parameters():
    with pytest.raises(TypeError, match=r"eps must be a single real number for a defense, got \[0.5, 1.0\]"):
        mgf.ModelGuardW(eps=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"margin must be in \[0, 1\), got 2.0"):
        mgf.ModelGuardW(margin=2.0)


# ------------------------------------------------------------------ defense
def test_defense_answers_and_counts_infeasible_rows():
    defense = mgf.ModelGuardW(eps=0.5)
    assert isinstance(defense, mgf.Defense)
    assert defense.preserves_top1 and defense.deterministic and not defense.discrete_outputs
    assert not mgf.ModelGuardW(margin=0.0).preserves_top1
    y = sweep_rows(10, 8, seed=14)
    x = defense(y)
    np.testing.assert_array_equal(x, solve_mgw(y, eps=0.5)[0])
    assert defense.num_queries == 8 and defense.num_infeasible == 0
    tie = np.array([0.5, 0.5, 0.0])
    np.testing.assert_array_equal(mgf.ModelGuardW(eps=0.0)(tie), tie)
    zero_budget = mgf.ModelGuardW(eps=0.0)
    zero_budget(np.stack([tie, [0.7, 0.2, 0.1]]))
    assert zero_budget.num_queries == 2 and zero_budget.num_infeasible == 1
    zero_budget(tie)
    assert zero_budget.num_queries == 3 and zero_budget.num_infeasible == 2
    zero_budget.reset_stats()
    assert zero_budget.num_queries == 0 and zero_budget.num_infeasible == 0
    assert repr(defense) == "ModelGuardW(eps=0.5, margin=0.0001, log_shift=1e-06)"
