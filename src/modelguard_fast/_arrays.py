"""Turning user arrays (numpy, torch, cupy) into checked batches and back.

Every defense accepts a batch (B, C) or a single prediction (C,) as a numpy
array, a torch tensor on any device, or a cupy array, and returns the same
type, device, dtype and shape. Inputs are never written to: read-only and
strided arrays are accepted (strided ones are copied once).

`checked` is the one path from a user array to a batch of valid probability
rows, for every defense: type, shape, dtype, then the C++
`check_probability_row` (finite, non-negative, sum within tolerance, top-1)
on the CPU, or the same `__host__ __device__` function in a CUDA kernel.
Rows are checked in the dtype the caller gave them, before any cast, so one
row gets one verdict whichever defense receives it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels, params
from ._validation import ROW_OK, raise_row_error

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_HALF = ("float16", "bfloat16")
_FULL_NAMES = ("float32", "float64")  # held to sum_tol alone (params.row_sum_tolerance)


@dataclass
class Batch:
    """A validated 2-D view of a user array.

    `data` is a C-contiguous numpy array for CPU inputs and a contiguous torch
    tensor for CUDA inputs, in the compute dtype. After `checked`, `top` holds
    each row's top-1 class (int64; numpy on the CPU, torch on CUDA) unless the
    check was left to a kernel, and `kernel_sum_tol` is the tolerance to hand
    such a kernel (see `checked`).
    """

    kind: str  # "numpy", "torch" or "cupy"
    on_cuda: bool
    data: Any
    dtype: np.dtype  # the dtype answers are returned in: the caller's (float32 for half-precision input)
    was_1d: bool
    top: Any = None
    kernel_sum_tol: float = float("inf")

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


# numpy dtype names by type code: dtype.name is computed in Python on each access (microseconds).
_NUMPY_NAMES = {"f": "float32", "d": "float64", "e": "float16"}


def _dtype_name(x: Any, kind: str) -> str:
    if kind == "torch":
        return str(x.dtype).replace("torch.", "")
    dtype = np.dtype(x.dtype)
    return _NUMPY_NAMES.get(dtype.char) or dtype.name


def _torch_dtype(dtype: np.dtype):
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


_F32, _F64 = FLOAT_DTYPES


def _plain_view(x: Any, num_classes: int | None) -> tuple[Batch, str] | None:
    """_view's answer for the common case, read without its general machinery; None for anything else.

    The common case: a numpy array or a plain CPU tensor (its numpy view; torch
    refuses that view for tensors off the CPU, requiring grad or with the
    negative or conjugate bit) of float32 or float64 (numpy's own dtype
    objects, so native byte order), 1-D (C,) or 2-D (B >= 1, C) with C >= 1
    columns (num_classes of them when given), C-contiguous with a non-negative
    row stride. Everything else, errors included, is _view's.
    """
    if type(x) is np.ndarray:
        kind = "numpy"
    else:
        torch = _torch()
        if torch is None or type(x) is not torch.Tensor:
            return None
        try:
            x = x.numpy()
        except (RuntimeError, TypeError):
            return None
        kind = "torch"
    dtype = x.dtype
    if dtype is _F32:
        given = "float32"
    elif dtype is _F64:
        given = "float64"
    else:
        return None
    shape = x.shape
    cols = shape[-1] if shape else 0
    if cols == 0 or (num_classes is not None and cols != num_classes) or not x.flags.c_contiguous:
        return None
    if len(shape) == 1:
        return Batch(kind, False, x[None], dtype, True), given
    # Only a one-row array can be C-contiguous with a negative row stride (torch.from_numpy refuses those).
    if len(shape) != 2 or shape[0] == 0 or (shape[0] == 1 and x.strides[0] < 0):
        return None
    return Batch(kind, False, x, dtype, False), given


def _view(x: Any, name: str, num_classes: int | None, allow_half: bool) -> tuple[Batch, str]:
    """`x` as a 2-D batch in float32 or float64 (half precision widened, exactly, to float32), and
    the name of the caller's dtype."""
    plain = _plain_view(x, num_classes)
    return plain if plain is not None else _general_view(x, name, num_classes, allow_half)


def _general_view(x: Any, name: str, num_classes: int | None, allow_half: bool) -> tuple[Batch, str]:
    """_view for every input: its checks and errors, conversions and copies."""
    try:
        kind = _kind(x)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if kind == "torch" and x.layout != _torch().strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}; call .to_dense() first")
    given = _dtype_name(x, kind)
    if given not in ("float32", "float64") and not (allow_half and given in _HALF):
        half = "; float16 and bfloat16 are accepted and answered in float32" if allow_half else ""
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype} "
                        f"(cast it, e.g. with .float() or .astype(np.float32){half})")
    shape = tuple(x.shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be 1-D (C,) or 2-D (B, C), got shape {shape}")
    if num_classes is not None and shape[-1] != num_classes:
        raise ValueError(f"{name} must have {num_classes} columns (num_classes), got shape {shape}")
    if len(shape) == 2 and shape[0] == 0:
        raise ValueError(f"{name} must hold at least one prediction, got an empty batch of shape {shape}")
    if shape[-1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {shape}")
    dtype = np.dtype("float32") if given in _HALF else np.dtype(given)
    was_1d = len(shape) == 1

    if kind == "numpy":
        data = x.reshape(1, -1) if was_1d else x
        # A one-row array counts as C-contiguous whatever its row stride, which may be negative
        # (torch.from_numpy refuses those): such arrays are copied as well.
        if data.dtype != dtype or not data.flags.c_contiguous or data.strides[0] < 0:
            data = np.ascontiguousarray(data, dtype=dtype)
            if data.strides[0] < 0:
                data = data.copy()
        return Batch(kind, False, data, dtype, was_1d), given

    torch = _torch()
    if kind == "cupy":
        if torch is None:
            import torch  # noqa: F811 - torch is a dependency; cupy inputs go through it
        x = torch.from_dlpack(x)
    t = x.detach()
    if was_1d:
        t = t.reshape(1, -1)
    if t.dtype != _torch_dtype(dtype):
        t = t.to(dtype=_torch_dtype(dtype))
    if not t.is_contiguous():
        t = t.contiguous()
    if t.is_cuda:
        return Batch(kind, True, t, dtype, was_1d), given
    if kind == "cupy":
        raise TypeError(f"{name}: a cupy array must live on a CUDA device")
    return Batch(kind, False, t.resolve_neg().resolve_conj().numpy(), dtype, was_1d), given


def prepare(x: Any, name: str, num_classes: int | None, compute_dtype: np.dtype | None = None) -> Batch:
    """Validates type, shape and dtype of `x` and returns it as a 2-D batch; does not look at the values.

    For arrays that are not probability rows (e.g. a Bayes attack's received
    answers, which need not sum to 1); defenses use `checked`. Raises
    TypeError for unsupported array types and dtypes (integers, float16,
    bfloat16 and complex are refused: cast to float32 or float64), and
    ValueError for shapes other than (C,) or (B, C) with B >= 1.
    """
    batch, _ = _view(x, name, num_classes, allow_half=False)
    if compute_dtype is not None and np.dtype(compute_dtype) != batch.dtype:
        batch.data = _cast(batch, np.dtype(compute_dtype))
    return batch


def checked(x: Any, name: str, num_classes: int | None, sum_tol: float, *, compute_dtype: Any = None,
            renormalize: bool | None = None, kernel_checks: bool = False) -> Batch:
    """`x` as a batch of valid probability rows, in `compute_dtype` (default: the caller's dtype).

    The one validation path of every defense:
      1. type, shape and dtype (TypeError / ValueError naming `name`): float32
         and float64 rows, and float16 / bfloat16 rows, which are widened to
         float32 and answered in float32 (their own precision cannot carry the
         answers);
      2. every row, in the dtype the caller gave it, through the C++
         `check_probability_row`: finite, non-negative, sum within the
         tolerance (sum_tol, plus the machine epsilon for half precision:
         `params.row_sum_tolerance`), and its top-1 class. With
         renormalize=True the sum is not checked and rows are rescaled to sum
         1 (in their own dtype) instead;
      3. the cast to `compute_dtype`. A narrowing cast (float64 rows into a
         float32 defense) must keep every row's top-1 class: a row whose
         top-1 would change (a near-tie, e.g. [0.5 - 1e-9, 0.5 + 1e-9, 0]) is
         refused with a ValueError that suggests dtype="float64".

    `renormalize`: None where the defense has no such option (its errors do
    not suggest one), else the option's value.

    `kernel_checks`: the defense's kernel runs `check_probability_row` itself
    as it reads each row (ModelGuard-S, ModelGuard-W). When the rows reach it
    unchanged (no renormalisation, no narrowing cast), step 2 is left to it
    (one pass over the batch, the same function, so the same verdict);
    `batch.top` is then None. `batch.kernel_sum_tol` is what to pass such a
    kernel: the row tolerance when it does the check, +inf when the rows were
    checked here already (their sum may have moved in the cast).
    """
    batch, given = _view(x, name, num_classes, allow_half=True)
    tol = sum_tol if given in _FULL_NAMES else params.row_sum_tolerance(sum_tol, given)
    target = batch.dtype if compute_dtype is None else np.dtype(compute_dtype)
    narrowing = target.itemsize < batch.dtype.itemsize
    if kernel_checks and not renormalize and not narrowing:
        batch.kernel_sum_tol = tol
        if target != batch.dtype:
            batch.data = _cast(batch, target)
        return batch
    hint = renormalize is not None
    top = _check(batch, name, float("inf") if renormalize else tol, hint)
    if renormalize:
        _rescale(batch, name)
    if target != batch.dtype:
        source = batch.data
        batch.data = _cast(batch, target)
        if narrowing:
            _same_top(batch, top, source, name, target)
    batch.top = top
    return batch


def checked_copy(x: Any, name: str, num_classes: int | None, sum_tol: float) -> Batch:
    """`checked(x, name, num_classes, sum_tol)` whose `data` is a fresh copy (the pass-through's answer).

    On the CPU the row check and the copy are one pass of the C++ kernel
    (check_copy_rows), so a checked copy costs about what a copy does;
    `top` is not computed there (None).
    """
    batch, given = _view(x, name, num_classes, allow_half=True)
    tol = sum_tol if given in _FULL_NAMES else params.row_sum_tolerance(sum_tol, given)
    if batch.on_cuda:
        batch.top = _check(batch, name, tol, False)
        batch.data = batch.data.clone()
        return batch
    data = batch.data
    out = np.empty(data.shape, data.dtype)
    row, code, col, value = _kernels.check_copy_rows(data, tol, out)
    if row >= 0:
        raise_row_error(name, row, code, col, value, tol)
    batch.data = out
    return batch


def _cast(batch: Batch, dtype: np.dtype) -> Any:
    if batch.on_cuda:
        return batch.data.to(_torch_dtype(dtype)).contiguous()
    return np.ascontiguousarray(batch.data, dtype=dtype)


def _check(batch: Batch, name: str, tol: float, hint: bool) -> Any:
    """Runs check_probability_row over every row; raises for the first bad one, returns the top-1 classes."""
    if batch.on_cuda:
        status, top = _kernels.check_rows_cuda(batch.data, tol)
        bad = status.nonzero().flatten()
        if bad.numel():
            row = int(bad[0])
            _raise_for_row(batch.data[row : row + 1].cpu().numpy(), name, row, tol, hint)
        return top
    top = np.empty(batch.rows, dtype=np.int64)
    row, code, col, value = _kernels.check_rows(batch.data, tol, top)
    if row >= 0:
        raise_row_error(name, row, code, col, value, tol, hint)
    return top


def _raise_for_row(host: np.ndarray, name: str, row: int, tol: float, hint: bool) -> None:
    """Raises the error of row `row`, flagged by a CUDA check: the host check of that one row
    (the same function) names its column and value."""
    _, code, col, value = _kernels.check_rows(np.ascontiguousarray(host), tol, np.empty(1, dtype=np.int64))
    raise_row_error(name, row, code, col, value, tol, hint)


def raise_for_device_row(x: Any, row: int, name: str, sum_tol: float, renormalize_hint: bool = False) -> None:
    """Raises the ValueError for row `row` of a CUDA batch `x` that a GPU kernel flagged."""
    _raise_for_row(x[row : row + 1].cpu().numpy(), name, row, sum_tol, renormalize_hint)


def _same_top(batch: Batch, top: Any, source: Any, name: str, dtype: np.dtype) -> None:
    """Refuses rows whose top-1 class changed in a narrowing cast (near-ties)."""
    narrowed = _check(batch, name, float("inf"), False)
    changed = (narrowed != top).nonzero()
    changed = changed[0] if not batch.on_cuda else changed.flatten()
    if len(changed):
        row = int(changed[0])
        raise ValueError(
            f"{name} row {row} has top-1 class {int(top[row])}, but once rounded to {dtype.name} (the dtype "
            f"this defense computes in) its top-1 class is {int(narrowed[row])}: a near-tie the answer could "
            f"not keep; build the defense with dtype=\"float64\" to answer such rows")


def _rescale(batch: Batch, name: str) -> None:
    """Divides each (already checked, finite and non-negative) row by its sum, in place of batch.data."""
    data = batch.data
    host = data.cpu().numpy() if batch.on_cuda else data
    sums = host.sum(axis=1, dtype=np.float64)
    zero = np.flatnonzero(sums == 0)
    if zero.size:
        raise ValueError(f"{name} row {zero[0]} sums to 0 and cannot be renormalized")
    if batch.on_cuda:
        batch.data = (data.double() / data.double().sum(dim=1, keepdim=True)).to(data.dtype).contiguous()
    else:
        batch.data = np.ascontiguousarray((host / sums[:, None]).astype(host.dtype))


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
    if result.dtype is not batch.dtype and result.dtype != batch.dtype:
        result = result.astype(batch.dtype)
    if batch.kind == "torch":
        return _torch().from_numpy(result)
    return result


def restore_mask(mask: Any, batch: Batch) -> Any:
    """A per-row bool mask (numpy on the CPU, torch on CUDA) of `batch`'s rows, as the caller's array kind:
    (B,) for a batch, () for a single (C,) prediction."""
    if batch.was_1d:
        mask = mask[0]
    if batch.kind == "cupy":
        import cupy

        return cupy.from_dlpack(mask)
    if batch.kind == "torch" and not batch.on_cuda:
        return _torch().from_numpy(np.asarray(mask))
    return mask


def private_copy(x: Any) -> Any:
    """A copy of a numpy array or CPU torch tensor (same type, dtype and shape) that no other thread
    can write to; anything else (CUDA and cupy arrays, or inputs `checked` refuses) unchanged."""
    if isinstance(x, np.ndarray):
        return x.copy()
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.layout == torch.strided:
        return x.detach().clone()
    return x


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy copy or view of a numpy array, torch tensor or cupy array (bfloat16 as float32)."""
    kind = _kind(x)
    if kind == "numpy":
        return x
    if kind == "torch":
        x = x.detach()
        return (x.float() if x.dtype == _torch().bfloat16 else x).cpu().numpy()
    return x.get()
