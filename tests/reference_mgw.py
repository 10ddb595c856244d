"""The ModelGuard-W linear program solved by HiGHS: the reference for tests and benchmarks.

The LP is built exactly as the issue states it, with the L1 budget split into
d_k >= |x_k - y_k| the standard way:

    minimize    sum_k x_k * log(y_k + log_shift)
    subject to  sum_k x_k = 1,  x >= 0,  d >= 0,
                d_k - x_k >= -y_k,  d_k + x_k >= y_k,  sum_k d_k <= eps,
                x_t - x_j >= margin  for every j != t,   t = argmax y (first index on ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

# Primal and dual feasibility tolerances HiGHS is run at.
HIGHS_TOLERANCE = 1e-10


@dataclass
class HighsResult:
    feasible: bool
    x: np.ndarray | None  # the optimal x (None when infeasible)
    objective: float  # nan when infeasible


def costs(y: np.ndarray, log_shift: float) -> np.ndarray:
    return np.log(np.asarray(y, dtype=np.float64) + log_shift)


def objective(x: np.ndarray, y: np.ndarray, log_shift: float) -> float:
    return float(np.dot(np.asarray(x, dtype=np.float64), costs(y, log_shift)))


def build_lp(y: np.ndarray, eps: float, margin: float, log_shift: float) -> highspy.HighsLp:
    """The LP above for one prediction y, as a column-wise HighsLp (columns: x then d),
    assembled with numpy so that building it costs little next to solving it."""
    y = np.asarray(y, dtype=np.float64)
    C = y.shape[0]
    t = int(np.argmax(y))
    n = C - 1
    inf = highspy.kHighsInf
    # Rows: 0 sum, 1 budget, 2..2+C d-x, 2+C..2+2C d+x, then one margin row per j != t.
    row_minus, row_plus, row_margin = 2, 2 + C, 2 + 2 * C
    num_row = row_margin + n
    lower = np.concatenate([[1.0, -inf], -y, y, np.full(n, margin)])
    upper = np.concatenate([[1.0, eps], np.full(2 * C + n, inf)])

    k = np.arange(C)
    margin_row = np.zeros(C, dtype=np.int64)
    margin_row[k != t] = row_margin + np.arange(n)
    # Column x_k (k != t): sum row, d-x row, d+x row, its margin row; x_t: every margin row.
    x_index = np.stack([np.zeros(C, dtype=np.int64), row_minus + k, row_plus + k, margin_row], axis=1)
    x_value = np.tile([1.0, -1.0, 1.0, -1.0], (C, 1))
    top_index = np.concatenate([[0, row_minus + t, row_plus + t], row_margin + np.arange(n)])
    top_value = np.concatenate([[1.0, -1.0, 1.0], np.ones(n)])
    d_index = np.stack([np.ones(C, dtype=np.int64), row_minus + k, row_plus + k], axis=1)
    index = np.concatenate([x_index[:t].ravel(), top_index, x_index[t + 1:].ravel(), d_index.ravel()])
    value = np.concatenate([x_value[:t].ravel(), top_value, x_value[t + 1:].ravel(), np.ones(3 * C)])
    counts = np.concatenate([np.full(C, 4), np.full(C, 3)])
    counts[t] = 3 + n
    starts = np.concatenate([[0], np.cumsum(counts)])

    lp = highspy.HighsLp()
    lp.num_col_ = 2 * C
    lp.num_row_ = num_row
    lp.col_cost_ = np.concatenate([costs(y, log_shift), np.zeros(C)])
    lp.col_lower_ = np.zeros(2 * C)
    lp.col_upper_ = np.full(2 * C, inf)
    lp.row_lower_ = lower
    lp.row_upper_ = upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = index.astype(np.int32)
    lp.a_matrix_.value_ = value
    return lp


def new_highs() -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("primal_feasibility_tolerance", HIGHS_TOLERANCE)
    h.setOptionValue("dual_feasibility_tolerance", HIGHS_TOLERANCE)
    h.setOptionValue("threads", 1)
    # HiGHS 1.16's presolve reports some feasible eps = 0 instances as infeasible
    # (e.g. a row summing to 1 exactly whose top margin holds, where x = y is
    # feasible); the simplex solver without presolve gets them right.
    h.setOptionValue("presolve", "off")
    return h


def solve_highs(y: np.ndarray, eps: float, margin: float = 1e-4, log_shift: float = 1e-6,
                highs: highspy.Highs | None = None) -> HighsResult:
    """Solves the LP with HiGHS and checks its model status (optimal or infeasible, nothing else)."""
    h = new_highs() if highs is None else highs
    h.passModel(build_lp(y, eps, margin, log_shift))
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return HighsResult(False, None, float("nan"))
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS returned model status {h.modelStatusToString(status)}")
    C = len(y)
    x = np.asarray(h.getSolution().col_value[:C], dtype=np.float64)
    return HighsResult(True, x, float(h.getInfo().objective_function_value))


def constraint_violation(x: np.ndarray, y: np.ndarray, eps: float, margin: float) -> dict[str, float]:
    """How far x is from satisfying each constraint of the LP (0 when it satisfies it), in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t = int(np.argmax(y))
    others = np.delete(x, t)
    return {
        "simplex": abs(float(x.sum()) - 1.0),
        "nonnegative": max(0.0, -float(x.min())),
        "budget": max(0.0, float(np.abs(x - y).sum()) - eps),
        "margin": max(0.0, float(margin - (x[t] - others).min())) if others.size else 0.0,
    }
