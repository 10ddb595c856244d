"""ModelGuard-W: the per-prediction linear program of the paper's Eq. (9), solved exactly.

For a prediction y with top-1 class t (first index on ties), the answer is the x
that solves

    minimize    sum_k x_k * log(y_k + log_shift)
    subject to  sum_k x_k = 1,  x >= 0,  ||x - y||_1 <= eps,
                x_t - x_j >= margin   for every j != t,

in the form the paper's public code states it. The solver is combinatorial and
exact (see csrc/include/modelguard_fast/mgw_solver.h for the method): each row
is sorted once, O(C log C), and solved in float64 whatever the input dtype;
results are cast back to it. Ties between equal costs are broken by class
index, so the answer is the same on every run, and the CPU and CUDA kernels
compute the same bits.

Rows that do not sum to 1 exactly get the budget eps + |1 - sum(y)|, the least
that lets x be a distribution at all (within rounding of eps for float64 rows).

Infeasible rows (a tie at the top that the budget cannot open to `margin`, or
eps = 0 with the margin not already there) are returned unchanged and flagged
in `feasible`; nothing is ever NaN.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _arrays, params
from .._backend import choose_backend, require_cuda
from .._kernels import C as _C
from .._validation import raise_row_error
from ..params import DEFAULT_SUM_TOL


def budgets(eps: Any, name: str = "eps") -> tuple[np.ndarray, bool]:
    """The L1 budgets as a float64 array, and whether `eps` was a single number.

    Each budget follows modelguard_fast.params.eps: a finite real in [0, 2].
    """
    if isinstance(eps, numbers.Real) or not hasattr(eps, "__len__") and not hasattr(eps, "__dlpack__"):
        return np.array([params.eps(eps, name)]), True
    try:
        values = np.asarray(_arrays.to_numpy(eps) if hasattr(eps, "__dlpack__") else eps)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number in [0, 2] or a 1-D sequence of them, got "
                        f"{type(eps).__name__}") from err
    if values.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.ndim == 0:
        return budgets(values.item(), name)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence, got shape {values.shape}")
    return np.array(params.eps_values(values.astype(np.float64).tolist(), name)), False


def solve_cpu(x: np.ndarray, eps: np.ndarray, margin: float, log_shift: float,
              sum_tol: float, hint: bool = True, simd: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous float32/float64 batch (B, C) -> x (B, E, C), feasible (B, E).

    The kernel checks each row as it solves it (one pass over the batch) and
    reports the first bad row, which is raised here.
    """
    B, C = x.shape
    out = np.empty((B, eps.size, C), dtype=x.dtype)
    feasible = np.empty((B, eps.size), dtype=np.bool_)
    solve = _C.mgw_solve_f32 if x.dtype == np.float32 else _C.mgw_solve_f64
    row, code, col, value = solve(x, eps, margin, log_shift, sum_tol, out, feasible, simd=simd)
    if row >= 0:
        raise_row_error("probs", row, code, col, value, sum_tol, hint)
    return out, feasible


def solve_cuda(x, eps: np.ndarray, margin: float, log_shift: float, sum_tol: float,
               hint: bool = True) -> tuple[Any, Any]:
    """Contiguous CUDA tensor (B, C) -> x (B, E, C), feasible (B, E), on its device and current stream."""
    import torch

    require_cuda("probs")
    B, C = x.shape
    E = eps.size
    device = x.device
    threads, f64, i32 = _C.mgw_cuda_workspace(B, C)
    out = torch.empty((B, E, C), dtype=x.dtype, device=device)
    feasible = torch.empty((B, E), dtype=torch.bool, device=device)
    status = torch.empty(B, dtype=torch.int32, device=device)
    workspace_f64 = torch.empty(f64, dtype=torch.float64, device=device)
    workspace_i32 = torch.empty(i32, dtype=torch.int32, device=device)
    with torch.cuda.device(device):
        stream = torch.cuda.current_stream(device)
        eps_device = torch.from_numpy(eps).to(device)
        _C.mgw_solve_cuda(x.data_ptr(), B, C, 0 if x.dtype == torch.float32 else 1, sum_tol,
                          eps_device.data_ptr(), E, margin, log_shift, workspace_f64.data_ptr(),
                          workspace_i32.data_ptr(), threads, out.data_ptr(), feasible.data_ptr(),
                          status.data_ptr(), stream.cuda_stream)
    bad = torch.nonzero(status).flatten()
    if bad.numel():
        row = int(bad[0])
        _arrays.raise_for_device_row(x, row, "probs", sum_tol, hint)
    return out, feasible


def restore_flags(feasible: Any, batch: _arrays.Batch) -> Any:
    """Feasibility flags as the caller's array type, on its device, without the batch axis for 1-D input."""
    if batch.was_1d:
        feasible = feasible[0]
    if batch.on_cuda:
        if batch.kind == "cupy":
            import cupy

            return cupy.from_dlpack(feasible)
        return feasible
    if batch.kind == "torch":
        return _arrays._torch().from_numpy(np.ascontiguousarray(feasible))
    return feasible


def solve_mgw(probs: Any, eps: Any = 1.0, margin: float = 1e-4, log_shift: float = 1e-6,
              sum_tol: float = DEFAULT_SUM_TOL, renormalize: bool = False,
              backend: str | None = None) -> tuple[Any, Any]:
    """Solves the ModelGuard-W LP for every prediction and every budget.

    Args:
        probs: predictions (B, C) or (C,): a numpy array, torch tensor (any
            device) or cupy array of float32 or float64 rows that sum to 1.
        eps: the L1 budget, a real in [0, 2] (modelguard_fast.params says
            why), or a 1-D sequence of budgets solved in one call (each row
            is sorted once for all of them).
        margin: the top-1 class must beat every other class by this, in [0, 1).
        log_shift: added to y inside the log, > 0.
        sum_tol: rows must sum to 1 within this absolute tolerance.
        renormalize: rescale rows to sum 1 instead of refusing them.
        backend: None (the best for the input's device) or one of
            modelguard_fast.available_backends(): "cpu-avx512", "cpu" (CPU
            arrays) or "cuda" (CUDA arrays). All give the same bits.

    Returns:
        (x, feasible). With a single eps, x has the shape of probs and
        feasible shape (B,) (a scalar for a 1-D probs); with E budgets, x is
        (B, E, C) and feasible (B, E) ((E, C) and (E,) for a 1-D probs). x has
        the type, device and dtype of probs; feasible is boolean. Where
        feasible is False the LP has no solution and x holds the input row
        unchanged.

    Raises:
        TypeError / ValueError naming the argument for unsupported arrays or
        dtypes, bad shapes, non-finite or negative entries, rows that do not
        sum to 1, or bad parameters. Nothing is returned half-done.
    """
    values, single = budgets(eps)
    margin = params.margin(margin)
    log_shift = params.log_shift(log_shift)
    sum_tol = params.sum_tol(sum_tol)
    renormalize = params.flag(renormalize, "renormalize")
    batch = _arrays.checked(probs, "probs", None, sum_tol, renormalize=renormalize, kernel_checks=True)
    backend = choose_backend(backend, batch.on_cuda)
    if batch.on_cuda:
        x, feasible = solve_cuda(batch.data, values, margin, log_shift, batch.kernel_sum_tol)
    else:
        x, feasible = solve_cpu(batch.data, values, margin, log_shift, batch.kernel_sum_tol,
                                simd=backend == "cpu-avx512")
    if single:
        x, feasible = x[:, 0], feasible[:, 0]
    return _arrays.restore(x, batch), restore_flags(feasible, batch)
