"""Turning user arrays (numpy, torch, cupy) into kernel inputs and back.

Every defense accepts a batch (B, C) or a single prediction (C,) as a numpy
array, a torch tensor on any device, or a cupy array, and returns the same
type, device, dtype and shape. Inputs are never written to: read-only and
strided arrays are accepted (strided ones are copied once).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Batch:
    """A validated 2-D view of a user array.

    `data` is a C-contiguous numpy array for CPU inputs and a contiguous torch
    tensor for CUDA inputs, in `compute_dtype`.
    """

    kind: str  # "numpy", "torch" or "cupy"
    on_cuda: bool
    data: Any
    dtype: np.dtype  # the caller's dtype, restored on output
    was_1d: bool

    @property
    def rows(self) -> int:
        return int(self.data.shape[0])


def _torch():
    return sys.modules.get("torch")


def _kind(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return "numpy"
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    if type(x).__module__.split(".")[0] == "cupy" and type(x).__name__ == "ndarray":
        return "cupy"
    raise TypeError(f"expected a numpy array, torch tensor or cupy array, got {type(x).__name__}")


def _numpy_dtype(x: Any, kind: str) -> np.dtype:
    if kind == "torch":
        torch = _torch()
        names = {torch.float32: np.float32, torch.float64: np.float64}
        if x.dtype not in names:
            return None
        return np.dtype(names[x.dtype])
    return np.dtype(x.dtype)


def _torch_dtype(dtype: np.dtype):
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def prepare(x: Any, name: str, num_classes: int | None, compute_dtype: np.dtype | None = None) -> Batch:
    """Validates type, shape and dtype of `x` and returns it as a 2-D batch.

    Raises TypeError for unsupported array types and dtypes (integers, float16,
    bfloat16 and complex are refused: cast to float32 or float64), and
    ValueError for shapes other than (C,) or (B, C) with B >= 1.
    """
    try:
        kind = _kind(x)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    dtype = _numpy_dtype(x, kind)
    if dtype is None or dtype not in FLOAT_DTYPES:  # np.dtype("float64") == None is True
        shown = x.dtype if dtype is None else dtype
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {shown} "
            "(cast it, e.g. with .float() or .astype(np.float32))"
        )
    shape = tuple(x.shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be 1-D (C,) or 2-D (B, C), got shape {shape}")
    if num_classes is not None and shape[-1] != num_classes:
        raise ValueError(f"{name} must have {num_classes} columns (num_classes), got shape {shape}")
    if len(shape) == 2 and shape[0] == 0:
        raise ValueError(f"{name} must hold at least one prediction, got an empty batch of shape {shape}")
    if shape[-1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {shape}")
    target = np.dtype(compute_dtype) if compute_dtype is not None else dtype
    was_1d = len(shape) == 1

    if kind == "numpy":
        data = x.reshape(1, -1) if was_1d else x
        if data.dtype != target or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=target)
        return Batch(kind, False, data, dtype, was_1d)

    torch = _torch()
    if kind == "cupy":
        if torch is None:
            import torch  # noqa: F811 - torch is a dependency; cupy inputs go through it
        x = torch.from_dlpack(x)
    t = x.detach()
    if was_1d:
        t = t.reshape(1, -1)
    wanted = _torch_dtype(target)
    if t.dtype != wanted:
        t = t.to(dtype=wanted)
    if not t.is_contiguous():
        t = t.contiguous()
    if t.is_cuda:
        return Batch(kind, True, t, dtype, was_1d)
    if kind == "cupy":
        raise TypeError(f"{name}: a cupy array must live on a CUDA device")
    return Batch(kind, False, t.resolve_neg().numpy(), dtype, was_1d)


def restore(result: Any, batch: Batch) -> Any:
    """Returns `result` (2-D, numpy on CPU or torch on CUDA) as the caller's type, dtype and shape."""
    if batch.was_1d:
        result = result[0]
    if batch.on_cuda:
        result = result.to(_torch_dtype(batch.dtype))
        if batch.kind == "cupy":
            import cupy

            return cupy.from_dlpack(result)
        return result
    if result.dtype != batch.dtype:
        result = result.astype(batch.dtype)
    if batch.kind == "torch":
        return _torch().from_numpy(result)
    return result


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy copy or view of a numpy array, torch tensor or cupy array."""
    kind = _kind(x)
    if kind == "numpy":
        return x
    if kind == "torch":
        return x.detach().cpu().numpy()
    return x.get()


def renormalize_rows(batch: Batch, name: str) -> None:
    """Rescales each row of `batch` to sum to 1 (in place of batch.data, never of the caller's
    array), after checking that it is finite and non-negative."""
    data = batch.data
    host = data.cpu().numpy() if batch.on_cuda else data
    from ._validation import check_probability_rows

    check_probability_rows(host, name, float("inf"))
    sums = host.sum(axis=1, dtype=np.float64)
    zero = np.flatnonzero(sums == 0)
    if zero.size:
        raise ValueError(f"{name} row {zero[0]} sums to 0 and cannot be renormalized")
    if batch.on_cuda:
        batch.data = (data.double() / data.double().sum(dim=1, keepdim=True)).to(data.dtype).contiguous()
    else:
        batch.data = np.ascontiguousarray((host / sums[:, None]).astype(host.dtype))
