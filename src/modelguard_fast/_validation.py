"""Argument checks shared by the defenses; every error names the argument,
what was expected and what was received."""

from __future__ import annotations

import math
import numbers

import numpy as np

ROW_OK, ROW_NON_FINITE, ROW_NEGATIVE, ROW_BAD_SUM = 0, 1, 2, 3

# Rows of a probability batch must sum to 1 within this absolute tolerance
# (float32 softmax outputs of up to a few thousand classes stay well inside it).
DEFAULT_SUM_TOL = 1e-3


def real_number(value, name: str) -> float:
    """`value` as a float; TypeError unless it is a real number (bools refused), ValueError if not finite."""
    if type(value) is float and math.isfinite(value):  # the common case, without the slow ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def eps_value(eps, name: str = "eps") -> float:
    """An L1 budget in (0, 2]: 2 is the largest L1 distance between two distributions."""
    eps = real_number(eps, name)
    if not 0.0 < eps <= 2.0:
        raise ValueError(f"{name} must be in (0, 2], got {eps}")
    return eps


def choice(value, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def float_dtype(value, name: str = "dtype") -> np.dtype:
    """float32 or float64, given as a numpy dtype, a name or a torch dtype."""
    text = str(value).replace("torch.", "")
    if text not in ("float32", "float64"):
        try:
            text = np.dtype(value).name
        except TypeError:
            pass
    if text in ("float32", "float64"):
        return np.dtype(text)
    raise ValueError(f"{name} must be float32 or float64, got {value!r}")


def raise_row_error(name: str, row: int, code: int, col: int, value: float, sum_tol: float) -> None:
    """Turns a kernel's row check into the matching ValueError."""
    if code == ROW_NON_FINITE:
        raise ValueError(f"{name} must be finite, got {value} at row {row}, column {col}")
    if code == ROW_NEGATIVE:
        raise ValueError(f"{name} must be non-negative probabilities, got {value} at row {row}, column {col}")
    if code == ROW_BAD_SUM:
        raise ValueError(
            f"{name} rows must sum to 1 (within sum_tol={sum_tol}), row {row} sums to {value!r}; "
            "pass renormalize=True to rescale rows"
        )
    raise RuntimeError(f"unknown row status {code} for {name} row {row}")


def check_probability_rows(x: np.ndarray, name: str, sum_tol: float) -> np.ndarray:
    """Validates a C-contiguous float32/float64 batch and returns its top-1 classes.

    Raises ValueError naming the first bad row: a non-finite or negative entry,
    or a row sum farther than sum_tol from 1.
    """
    from . import _C

    top = np.empty(x.shape[0], dtype=np.int64)
    check = _C.check_rows_f32 if x.dtype == np.float32 else _C.check_rows_f64
    row, code, col, value = check(x, sum_tol, top)
    if row >= 0:
        raise_row_error(name, row, code, col, value, sum_tol)
    return top


def raise_for_device_row(x, row: int, code: int, name: str, sum_tol: float) -> None:
    """Raises the ValueError for row `row` of a CUDA batch `x` that a GPU check flagged with `code`.

    The GPU kernels report only a status per row; the host check of that one
    row names the column and the value.
    """
    from . import _C

    host = np.ascontiguousarray(x[row : row + 1].cpu().numpy())
    check = _C.check_rows_f32 if host.dtype == np.float32 else _C.check_rows_f64
    _, host_code, col, value = check(host, sum_tol, np.empty(1, dtype=np.int64))
    if host_code == ROW_OK:
        col, value = -1, float("nan")
    else:
        code = host_code
    raise_row_error(name, row, code, col, value, sum_tol)


def torch_device(value, name: str = "device"):
    """`value` as a torch.device that exists here; ValueError naming `name` for a malformed device
    string, and for a CUDA (or MPS) device this machine cannot use."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {value!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} = {value!r}, but CUDA is not available here (torch {torch.__version__}, "
                             f"built with CUDA {torch.version.cuda}, no visible GPU); use 'cpu'")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name} = {value!r}, but only {count} CUDA device(s) are visible (0..{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} = {value!r}, but MPS is not available here; use 'cpu'")
    return device
