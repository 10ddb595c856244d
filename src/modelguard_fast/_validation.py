"""Argument checks shared by the whole package; every error names the argument,
what was expected and what was received.

The parameters the defenses share (eps, sum_tol, margin, ...) have their rules
in modelguard_fast.params; the probability-row check itself is the C++
`check_probability_row` (csrc/include/modelguard_fast/common.h), reached
through modelguard_fast._arrays.checked.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

ROW_OK, ROW_NON_FINITE, ROW_NEGATIVE, ROW_BAD_SUM = 0, 1, 2, 3


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


def choice(value, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def float_dtype(value, name: str = "dtype") -> np.dtype:
    """float32 or float64, given as a numpy dtype, a name or a torch dtype (None is refused, not float64)."""
    if value is None:
        raise ValueError(f"{name} must be float32 or float64, got None")
    text = str(value).replace("torch.", "")
    if text not in ("float32", "float64"):
        try:
            text = np.dtype(value).name
        except TypeError:
            pass
    if text in ("float32", "float64"):
        return np.dtype(text)
    raise ValueError(f"{name} must be float32 or float64, got {value!r}")


def raise_row_error(name: str, row: int, code: int, col: int, value: float, sum_tol: float,
                    renormalize_hint: bool = False) -> None:
    """Turns a row check's result into the matching ValueError.

    `renormalize_hint`: the defense has a renormalize option, which the error
    for a bad sum then suggests.
    """
    if code == ROW_NON_FINITE:
        raise ValueError(f"{name} must be finite, got {value} at row {row}, column {col}")
    if code == ROW_NEGATIVE:
        raise ValueError(f"{name} must be non-negative probabilities, got {value} at row {row}, column {col}")
    if code == ROW_BAD_SUM:
        hint = "; pass renormalize=True to rescale rows" if renormalize_hint else ""
        raise ValueError(f"{name} rows must sum to 1 (within sum_tol={sum_tol}), row {row} sums to {value!r}{hint}")
    raise RuntimeError(f"unknown row status {code} for {name} row {row}")


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
