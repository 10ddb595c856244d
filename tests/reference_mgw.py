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
    """The LP above for one prediction y, as a column-wise HighsLp (columns: x then d)."""
    y = np.asarray(y, dtype=np.float64)
    C = y.shape[0]
    t = int(np.argmax(y))
    others = [j for j in range(C) if j != t]
    inf = highspy.kHighsInf
    # Rows: 0 sum, 1 budget, 2..2+C d-x, 2+C..2+2C d+x, then one margin row per j != t.
    row_sum, row_budget, row_minus, row_plus, row_margin = 0, 1, 2, 2 + C, 2 + 2 * C
    num_row = 2 + 2 * C + len(others)
    lower = np.empty(num_row)
    upper = np.full(num_row, inf)
    lower[row_sum] = upper[row_sum] = 1.0
    lower[row_budget], upper[row_budget] = -inf, eps
    lower[row_minus:row_minus + C] = -y
    lower[row_plus:row_plus + C] = y
    lower[row_margin:] = margin

    starts, index, value = [0], [], []
    margin_row = {j: row_margin + i for i, j in enumerate(others)}
    for k in range(C):  # x_k
        entries = [(row_sum, 1.0), (row_minus + k, -1.0), (row_plus + k, 1.0)]
        if k == t:
            entries += [(margin_row[j], 1.0) for j in others]
        else:
            entries.append((margin_row[k], -1.0))
        entries.sort()
        index += [r for r, _ in entries]
        value += [v for _, v in entries]
        starts.append(len(index))
    for k in range(C):  # d_k
        entries = [(row_budget, 1.0), (row_minus + k, 1.0), (row_plus + k, 1.0)]
        index += [r for r, _ in entries]
        value += [v for _, v in entries]
        starts.append(len(index))

    lp = highspy.HighsLp()
    lp.num_col_ = 2 * C
    lp.num_row_ = num_row
    lp.col_cost_ = np.concatenate([costs(y, log_shift), np.zeros(C)])
    lp.col_lower_ = np.zeros(2 * C)
    lp.col_upper_ = np.full(2 * C, inf)
    lp.row_lower_ = lower
    lp.row_upper_ = upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.asarray(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.asarray(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.asarray(value, dtype=np.float64)
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
