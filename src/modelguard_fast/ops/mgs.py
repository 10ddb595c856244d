"""Stateless ModelGuard-S centroid search over packed codebooks.

Packed layout: `codebook` (N, C) holds every class's centroids, class t in
rows offsets[t]:offsets[t + 1], in codebook order; `offsets` has C + 1 int64
entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _arrays, params
from .._backend import require_cuda
from .._kernels import C as _C, check_rows
from .._validation import choice, raise_row_error
from ..params import DEFAULT_SUM_TOL

SEARCH_MODES = {"first": 0, "nearest": 1, "offline": 2}


def packed_to_device(codebook: np.ndarray, offsets: np.ndarray, device) -> tuple[Any, Any]:
    """Copies packed codebooks to a torch device (an empty codebook gets one dummy row)."""
    import torch

    if codebook.shape[0] == 0:  # the kernel needs a valid pointer even when nothing is read
        codebook = np.zeros((1, codebook.shape[1]), dtype=codebook.dtype)
    return torch.tensor(codebook, device=device), torch.tensor(offsets, device=device)


def _checked_top(x: np.ndarray, sum_tol: float, top: np.ndarray | None) -> np.ndarray:
    """`top` when given (rows checked already), else the rows checked here: their top-1 classes."""
    if top is not None:
        return top
    top = np.empty(x.shape[0], dtype=np.int64)
    row, code, col, value = check_rows(x, sum_tol, top)
    if row >= 0:
        raise_row_error("probs", row, code, col, value, sum_tol)
    return top


def search_cpu(x: np.ndarray, codebook: np.ndarray, offsets: np.ndarray, eps: float, mode: str,
               sum_tol: float, top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mgs_search on a C-contiguous numpy batch of the codebook's dtype.

    `top`: the rows' top-1 classes when they were checked already (see
    _arrays.checked); otherwise the rows are checked here with `sum_tol`.
    """
    top = _checked_top(x, sum_tol, top)
    index = np.empty(x.shape[0], dtype=np.int64)
    distance = np.empty(x.shape[0], dtype=codebook.dtype)
    search = _C.search_packed_f32 if codebook.dtype == np.float32 else _C.search_packed_f64
    search(x, top, codebook, offsets, eps, SEARCH_MODES[mode], index, distance)
    return top, index, distance


def indexed_store(codebook: np.ndarray, offsets: np.ndarray):
    """Validated packed codebooks in a compiled store that searches them in sublinear time.

    The store answers exactly as search_cpu does (same index, same distance
    bits); see csrc/include/modelguard_fast/mgs_index.h.
    """
    C = codebook.shape[1]
    store = (_C.Codebooks32 if codebook.dtype == np.float32 else _C.Codebooks64)(C)
    store.append_rows(np.repeat(np.arange(C, dtype=np.int64), np.diff(offsets)), codebook)
    return store


def search_indexed(x: np.ndarray, store, eps: float, mode: str, sum_tol: float,
                   top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """search_cpu against an indexed_store: (top, index, distance) per row of a C-contiguous batch of
    the store's dtype (`top` and `sum_tol` as in search_cpu)."""
    top = _checked_top(x, sum_tol, top)
    index = np.empty(x.shape[0], dtype=np.int64)
    distance = np.empty(x.shape[0], dtype=x.dtype)
    store.search(x, top, eps, SEARCH_MODES[mode], index, distance)
    return top, index, distance


def search_cuda(x, codebook, starts, ends, eps: float, mode: str, sum_tol: float,
                renormalize_hint: bool = False) -> tuple[Any, Any, Any]:
    """mgs_search on a contiguous CUDA tensor with device-resident codebooks.

    Class t's codebook is rows starts[t]:ends[t] of `codebook` (int64 tensors
    of C entries; for packed codebooks, offsets[:-1] and offsets[1:]). The
    kernel checks each row with check_probability_row and `sum_tol` (+inf
    for rows checked already).
    """
    import torch

    require_cuda("probs")
    B, C = x.shape
    device = x.device
    status = torch.empty(B, dtype=torch.int32, device=device)
    top = torch.empty(B, dtype=torch.int64, device=device)
    index = torch.empty(B, dtype=torch.int64, device=device)
    distance = torch.empty(B, dtype=x.dtype, device=device)
    with torch.cuda.device(device):
        _C.mgs_search_cuda(x.data_ptr(), B, C, 0 if x.dtype == torch.float32 else 1, sum_tol, codebook.data_ptr(),
                           starts.data_ptr(), ends.data_ptr(), eps, SEARCH_MODES[mode], status.data_ptr(), top.data_ptr(),
                           index.data_ptr(), distance.data_ptr(), torch.cuda.current_stream(device).cuda_stream)
    bad = torch.nonzero(status).flatten()
    if bad.numel():
        _arrays.raise_for_device_row(x, int(bad[0]), "probs", sum_tol, renormalize_hint)
    return top, index, distance


def check_packed(codebook: Any, offsets: Any, sum_tol: float = DEFAULT_SUM_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Validated C-contiguous copies of a packed codebook and its offsets.

    Besides the layout, every centroid must be a valid probability row (the
    row check with `sum_tol`) filed under its own top-1 class: a NaN,
    negative or misfiled centroid would otherwise come back as an answer.
    """
    if not isinstance(codebook, np.ndarray) or not isinstance(offsets, np.ndarray):
        raise TypeError(f"codebook and offsets must be numpy arrays, got {type(codebook).__name__} and "
                        f"{type(offsets).__name__}")
    codebook = np.ascontiguousarray(codebook)
    offsets = np.ascontiguousarray(offsets)
    if codebook.ndim != 2 or codebook.shape[1] < 1 or codebook.dtype not in _arrays.FLOAT_DTYPES:
        raise ValueError(f"codebook must be a float32/float64 array of shape (N, C), got {codebook.dtype} "
                         f"{codebook.shape}")
    C = codebook.shape[1]
    if offsets.shape != (C + 1,) or offsets.dtype != np.int64:
        raise ValueError(f"offsets must be int64 of shape ({C + 1},), got {offsets.dtype} {offsets.shape}")
    if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != codebook.shape[0]:
        raise ValueError(f"offsets must rise from 0 to {codebook.shape[0]} (the codebook's rows), got {offsets}")
    if len(codebook):
        top = _arrays.checked(codebook, "codebook", C, sum_tol).top
        classes = np.repeat(np.arange(C, dtype=np.int64), np.diff(offsets))
        wrong = np.flatnonzero(top != classes)
        if wrong.size:
            row = int(wrong[0])
            raise ValueError(f"codebook row {row} is filed under class {int(classes[row])} by offsets, but its "
                             f"top-1 class is {int(top[row])}; every centroid belongs to its own top-1 class")
    return codebook, offsets


def mgs_search(probs: Any, codebook: np.ndarray, offsets: np.ndarray, eps: float, mode: str = "offline",
               sum_tol: float = DEFAULT_SUM_TOL) -> tuple[Any, Any, Any]:
    """Searches each row's top-1 class codebook; inserts nothing.

    mode "first": the lowest-index centroid within eps; "nearest": the nearest
    one within eps (lowest index on ties); "offline": the first within eps,
    else the nearest. Returns (top, index, distance) per row, on the input's
    device (torch tensors for CUDA input, numpy otherwise); index is -1 where
    no centroid qualifies (or the class codebook is empty). Distances are in
    the codebook's dtype, to which inputs are cast (float64 rows whose top-1
    class a cast to a float32 codebook would change are refused).

    eps and sum_tol follow modelguard_fast.params; the codebook's centroids
    must be valid probability rows, each under its own top-1 class.
    """
    eps = params.eps(eps)
    sum_tol = params.sum_tol(sum_tol)
    mode = choice(mode, "mode", tuple(SEARCH_MODES))
    codebook, offsets = check_packed(codebook, offsets, sum_tol)
    batch = _arrays.checked(probs, "probs", codebook.shape[1], sum_tol, compute_dtype=codebook.dtype,
                            kernel_checks=True)
    if not batch.on_cuda:
        return search_cpu(batch.data, codebook, offsets, eps, mode, batch.kernel_sum_tol, batch.top)
    cb, off = packed_to_device(codebook, offsets, batch.data.device)
    return search_cuda(batch.data, cb, off[:-1], off[1:], eps, mode, batch.kernel_sum_tol)
