"""ModelGuard-W: each prediction is replaced by the optimum of the paper's linear program (Eq. 9)."""

from __future__ import annotations

from typing import Any

from .. import params
from ..defense import Defense
from ..ops.mgw import budgets, solve_mgw
from ..params import DEFAULT_SUM_TOL


class ModelGuardW(Defense):
    """Answers each prediction y with the solution x of

        minimize    sum_k x_k * log(y_k + log_shift)
        subject to  sum_k x_k = 1,  x >= 0,  ||x - y||_1 <= eps,
                    x_t - x_j >= margin  for every j != t  (t = argmax y),

    solved exactly per row (see modelguard_fast.ops.solve_mgw).

    Args:
        eps: L1 budget, in [0, 2] (modelguard_fast.params says why).
        margin: the top-1 class beats every other class by at least this, in [0, 1).
        log_shift: added to y inside the log, > 0.
        sum_tol: rows must sum to 1 within this absolute tolerance.
        renormalize: rescale rows to sum 1 instead of refusing them.

    Calls take and return numpy arrays, torch tensors (any device) or cupy
    arrays of shape (B, C) or (C,), float32 or float64, keeping type, device,
    dtype and shape.

    Infeasible rows: when the LP has no solution (a tie at the top that a
    budget this small cannot open to `margin`, or eps = 0 with the margin not
    already there) the row is returned unchanged; `num_infeasible` counts such
    rows. `modelguard_fast.ops.solve_mgw` returns the per-row flag.

    With margin > 0 the answer's top-1 class is the input's (for float32
    inputs, margins below float32 rounding, about 1e-7, can tie after the cast).
    With margin = 0 it can tie, so `preserves_top1` is then False.
    """

    name = "ModelGuard-W"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = False

    def __init__(self, eps: float = 1.0, margin: float = 1e-4, log_shift: float = 1e-6,
                 sum_tol: float = DEFAULT_SUM_TOL, renormalize: bool = False):
        values, single = budgets(eps)
        if not single:
            raise TypeError(f"eps must be a single real number for a defense, got {eps!r} "
                            "(use modelguard_fast.ops.solve_mgw for a sweep over budgets)")
        self.eps = float(values[0])
        self.margin = params.margin(margin)
        self.log_shift = params.log_shift(log_shift)
        self.sum_tol = params.sum_tol(sum_tol)
        self.renormalize = params.flag(renormalize, "renormalize")
        self.preserves_top1 = self.margin > 0

    def __repr__(self) -> str:
        return f"ModelGuardW(eps={self.eps}, margin={self.margin}, log_shift={self.log_shift})"

    def __call__(self, probs: Any) -> Any:
        """Defends predictions; see the class docstring."""
        x, feasible = solve_mgw(probs, self.eps, self.margin, self.log_shift, self.sum_tol, self.renormalize)
        rows = 1 if feasible.ndim == 0 else int(feasible.shape[0])
        self.stats.record(rows, infeasible=rows - int(feasible.sum()))
        return x

    @property
    def num_infeasible(self) -> int:
        """Of the rows answered since construction or reset_stats(), how many had an infeasible LP and were
        returned unchanged (stats.infeasible)."""
        return self.stats.infeasible
