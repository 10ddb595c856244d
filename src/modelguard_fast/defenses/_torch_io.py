"""Torch views of user arrays, for the defenses written with torch ops.

These defenses run the same torch code on every device: numpy inputs are
viewed as CPU tensors, torch tensors stay where they are and cupy arrays
become CUDA tensors (via DLPack). Inputs are never written to. Rows are
checked by modelguard_fast._arrays.checked, the path every defense shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _arrays
from .._validation import ROW_NON_FINITE, raise_row_error


def tensor_batch(x: Any, name: str, num_classes: int | None, sum_tol: float,
                 compute_dtype: np.dtype | None = None) -> tuple[_arrays.Batch, torch.Tensor, torch.Tensor]:
    """Checked probability rows of `x` (see _arrays.checked) as a 2-D tensor, and their top-1 classes."""
    batch = _arrays.checked(x, name, num_classes, sum_tol, compute_dtype=compute_dtype)
    return batch, _tensor(batch), _tensor_top(batch)


def logits_batch(x: Any, name: str, num_classes: int | None) -> tuple[_arrays.Batch, torch.Tensor]:
    """`x` as a 2-D tensor of finite values (logits: any sign, any sum)."""
    batch = _arrays.prepare(x, name, num_classes)
    t = _tensor(batch)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        raise_row_error(name, row, ROW_NON_FINITE, col, float(t[row, col]), 0.0)
    return batch, t


def _tensor(batch: _arrays.Batch) -> torch.Tensor:
    data = batch.data
    if batch.on_cuda:
        return data
    if not data.flags.writeable:
        # torch warns on read-only numpy memory; these defenses never write to it, but one
        # copy is cheaper than silencing warnings process-wide.
        data = data.copy()
    return torch.from_numpy(data)


def _tensor_top(batch: _arrays.Batch) -> torch.Tensor:
    return batch.top if batch.on_cuda else torch.from_numpy(batch.top)


def restore(result: torch.Tensor, batch: _arrays.Batch) -> Any:
    """`result` (2-D) as the caller's array type, device, dtype and shape."""
    return _arrays.restore(result if batch.on_cuda else result.numpy(), batch)


def shape_of(batch: _arrays.Batch, t: torch.Tensor) -> tuple[int, ...]:
    """The caller's shape of a batch."""
    return (int(t.shape[1]),) if batch.was_1d else (int(t.shape[0]), int(t.shape[1]))


def companion(x: Any, name: str, batch: _arrays.Batch, t: torch.Tensor, sum_tol: float) -> torch.Tensor:
    """A second batch of probability rows that must match `probs` row for row, as a tensor like `t`."""
    other_batch, other, _ = tensor_batch(x, name, None, sum_tol, np.dtype(str(t.dtype).replace("torch.", "")))
    expected, got = shape_of(batch, t), shape_of(other_batch, other)
    if expected != got:
        raise ValueError(f"{name} must have the shape of probs {expected}, got shape {got}")
    return other.to(device=t.device, dtype=t.dtype)


def model_softmax(model, x: torch.Tensor) -> torch.Tensor:
    """softmax(model(x)) without gradients: float64 for float64 logits, else float32 (the query views)."""
    with torch.no_grad():
        logits = model(x)
    return torch.softmax(logits, dim=-1, dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32)
