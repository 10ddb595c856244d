"""Stateless ModelGuard-S centroid search over packed codebooks.

Packed layout: `codebook` (N, C) holds every class's centroids, class t in
rows offsets[t]:offsets[t + 1], in codebook order; `offsets` has C + 1 int64
entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _C
from .. import _arrays
from .._backend import require_cuda
from .._validation import DEFAULT_SUM_TOL, check_probability_rows, choice, eps_value, raise_for_device_row

SEARCH_MODES = {"first": 0, "nearest": 1, "offline": 2}


def packed_to_device(codebook: np.ndarray, offsets: np.ndarray, device) -> tuple[Any, Any]:
    """Copies packed codebooks to a torch device (an empty codebook gets one dummy row)."""
    import torch

    if codebook.shape[0] == 0:  # the kernel needs a valid pointer even when nothing is read
        codebook = np.zeros((1, codebook.shape[1]), dtype=codebook.dtype)
    return torch.tensor(codebook, device=device), torch.tensor(offsets, device=device)


def search_cpu(x: np.ndarray, codebook: np.ndarray, offsets: np.ndarray, eps: float, mode: str,
               sum_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mgs_search on a validated C-contiguous numpy batch of the codebook's dtype."""
    top = check_probability_rows(x, "probs", sum_tol)
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


def search_indexed(x: np.ndarray, store, eps: float, mode: str, sum_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """search_cpu against an indexed_store: (top, index, distance) per row of a validated batch."""
    top = check_probability_rows(x, "probs", sum_tol)
    index = np.empty(x.shape[0], dtype=np.int64)
    distance = np.empty(x.shape[0], dtype=x.dtype)
    store.search(x, top, eps, SEARCH_MODES[mode], index, distance)
    return top, index, distance


def search_cuda(x, codebook, starts, ends, eps: float, mode: str, sum_tol: float) -> tuple[Any, Any, Any]:
    """mgs_search on a contiguous CUDA tensor with device-resident codebooks.

    Class t's codebook is rows starts[t]:ends[t] of `codebook` (int64 tensors
    of C entries; for packed codebooks, offsets[:-1] and offsets[1:]).
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
        row = int(bad[0])
        raise_for_device_row(x, row, int(status[row]), "probs", sum_tol)
    return top, index, distance


def check_packed(codebook: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated C-contiguous copies of a packed codebook and its offsets."""
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
    return codebook, offsets


def mgs_search(probs: Any, codebook: np.ndarray, offsets: np.ndarray, eps: float, mode: str = "offline",
               sum_tol: float = DEFAULT_SUM_TOL) -> tuple[Any, Any, Any]:
    """Searches each row's top-1 class codebook; inserts nothing.

    mode "first": the lowest-index centroid within eps; "nearest": the nearest
    one within eps (lowest index on ties); "offline": the first within eps,
    else the nearest. Returns (top, index, distance) per row, on the input's
    device (torch tensors for CUDA input, numpy otherwise); index is -1 where
    no centroid qualifies (or the class codebook is empty). Distances are in
    the codebook's dtype, to which inputs are cast.
    """
    eps = eps_value(eps)
    mode = choice(mode, "mode", tuple(SEARCH_MODES))
    codebook, offsets = check_packed(codebook, offsets)
    batch = _arrays.prepare(probs, "probs", codebook.shape[1], codebook.dtype)
    if not batch.on_cuda:
        return search_cpu(batch.data, codebook, offsets, eps, mode, sum_tol)
    cb, off = packed_to_device(codebook, offsets, batch.data.device)
    return search_cuda(batch.data, cb, off[:-1], off[1:], eps, mode, sum_tol)
