"""Torch views of user arrays, for the defenses written with torch ops.

These defenses run the same torch code on every device: numpy inputs are
viewed as CPU tensors, torch tensors stay where they are and cupy arrays
become CUDA tensors (via DLPack). Inputs are never written to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _arrays
from .._validation import ROW_NEGATIVE, ROW_NON_FINITE, positive_int, raise_row_error, real_number

_NUMPY_DTYPE = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def tensor_batch(x: Any, name: str, num_classes: int | None,
                 compute_dtype: np.dtype | None = None) -> tuple[_arrays.Batch, torch.Tensor]:
    """Validates type, dtype and shape of `x` (see _arrays.prepare) and returns it as a 2-D tensor."""
    batch = _arrays.prepare(x, name, num_classes, compute_dtype)
    data = batch.data
    if not batch.on_cuda:
        if not data.flags.writeable:
            # torch warns on read-only numpy memory; these defenses never write to it, but one
            # copy is cheaper than silencing warnings process-wide.
            data = data.copy()
        data = torch.from_numpy(data)
    return batch, data


def restore(result: torch.Tensor, batch: _arrays.Batch) -> Any:
    """`result` (2-D) as the caller's array type, device, dtype and shape."""
    return _arrays.restore(result if batch.on_cuda else result.numpy(), batch)


def shape_of(batch: _arrays.Batch, t: torch.Tensor) -> tuple[int, ...]:
    """The caller's shape of a batch."""
    return (int(t.shape[1]),) if batch.was_1d else (int(t.shape[0]), int(t.shape[1]))


def companion(x: Any, name: str, batch: _arrays.Batch, t: torch.Tensor) -> torch.Tensor:
    """A second input that must match `probs` row for row, as a tensor like `t` (device and dtype)."""
    other_batch, other = tensor_batch(x, name, None, _NUMPY_DTYPE[t.dtype])
    expected, got = shape_of(batch, t), shape_of(other_batch, other)
    if expected != got:
        raise ValueError(f"{name} must have the shape of probs {expected}, got shape {got}")
    return other.to(device=t.device, dtype=t.dtype)


def check_probabilities(t: torch.Tensor, name: str, sum_tol: float) -> torch.Tensor:
    """Raises ValueError naming the first bad row of a probability batch; returns its top-1 classes.

    A row is bad when an entry is not finite or negative (the first such
    column is named) or when its sum is farther than sum_tol from 1. Top-1 is
    the first index of the maximum, as argmax gives it.
    """
    bad_entry = ~torch.isfinite(t) | (t < 0)
    sums = t.sum(dim=1, dtype=torch.float64)
    bad_row = bad_entry.any(dim=1) | ~((sums - 1.0).abs() <= sum_tol)
    if bool(bad_row.any()):
        row = int(torch.nonzero(bad_row)[0, 0])
        entries = torch.nonzero(bad_entry[row])
        if entries.numel():
            col = int(entries[0, 0])
            value = float(t[row, col])
            code = ROW_NEGATIVE if np.isfinite(value) else ROW_NON_FINITE
            raise_row_error(name, row, code, col, value, sum_tol)
        raise ValueError(f"{name} rows must sum to 1 (within sum_tol={sum_tol}), "
                         f"row {row} sums to {float(sums[row])!r}")
    return torch.argmax(t, dim=1)


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raises ValueError naming the first non-finite entry of a batch (of logits)."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        raise_row_error(name, row, ROW_NON_FINITE, col, float(t[row, col]), 0.0)


def sum_tolerance(value) -> float:
    """A validated sum_tol argument."""
    value = real_number(value, "sum_tol")
    if value < 0:
        raise ValueError(f"sum_tol must be >= 0, got {value}")
    return value


def optional_classes(value) -> int | None:
    """A validated num_classes argument that may be None (any number of columns)."""
    return None if value is None else positive_int(value, "num_classes")


def model_softmax(model, x: torch.Tensor) -> torch.Tensor:
    """softmax(model(x)) without gradients: float64 for float64 logits, else float32 (the query views)."""
    with torch.no_grad():
        logits = model(x)
    return torch.softmax(logits, dim=-1, dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32)
