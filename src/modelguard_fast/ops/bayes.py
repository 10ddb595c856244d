"""Partial Bayes matching: recovering clean predictions with a lookup table.

The attack of Section 3.4 / Appendix B.1 of the ModelGuard paper builds a
table of (clean, perturbed) prediction pairs by pushing Dirichlet draws
through the defense's offline map, then answers each received (defended)
prediction r with

    candidates = table rows whose clean top-1 class is r's top-1 class
                 (every row when top1_filter=False)
    d_j        = ||r - perturbed_j||_1
    tol        = max(delta, min_j d_j)
    answer     = mean of clean_j over the candidates with d_j <= tol

so there is always a match (the nearest rows) unless r's class has no table
row at all; then r is returned unchanged. Top-1 classes are the first index
of the maximum, as numpy's and torch's argmax give.

Precision: the table's dtype is the compute dtype (float64 if either table
is). Received rows are cast to it; each distance is summed in it over the
columns in order, the same arithmetic on every path (CPU, each of its
instruction sets, CUDA, and the row-by-row numpy reference in the tests), so
a row exactly at distance tol is always included and ties are resolved
identically everywhere. Means are accumulated in float64 and cast to the
received dtype.

Two methods give the same rows (their means differ at most by float64
rounding of the additions):

- "general" scans, for each received row, every candidate row.
- "grouped" first merges table rows with the same class and identical
  perturbed value into one weighted row (their distances to any r are equal,
  bit for bit) and answers identical received rows once. It is exact for any
  table, including received values absent from the table and values closer
  than delta to each other; it is fast when the defense's outputs are
  discrete (ModelGuard-S, Top-1, Rounding): O(N C) to hash the table, O(B C)
  to hash the received rows, plus U x G_c x C for U distinct received values
  against the G_c distinct table values of their class.
- "auto" (default) takes "grouped" when the table has at most N / 2 distinct
  (class, perturbed value) pairs, i.e. when perturbed values repeat on
  average at least twice; continuous defenses (ModelGuard-W, MAD, Reverse
  Sigmoid) give N distinct values and use "general". The count is cached.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .._kernels import C as _C
from .. import _arrays
from .._backend import require_cuda
from .._validation import ROW_NEGATIVE, ROW_NON_FINITE, choice, raise_row_error, real_number

METHODS = ("auto", "general", "grouped")
DEFAULT_DELTA = 0.01

_ISA_CODES = {"auto": 0, "generic": 1, "avx2": 2, "avx512": 3}
# CUDA kernel tiles: received rows per block (one per lane).
_CUDA_TILE_QUERIES = 32


def cpu_instruction_sets() -> list[str]:
    """Instruction sets of the CPU matcher that this build has and this CPU runs, best last."""
    names = {code: name for name, code in _ISA_CODES.items()}
    return [names[code] for code in _C.bayes_isas()]


def _host_table(table: Any, name: str) -> np.ndarray:
    try:
        kind = _arrays._kind(table)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if _arrays._dtype_name(table, kind) not in ("float32", "float64"):
        raise TypeError(f"{name} must have dtype float32 or float64, got {table.dtype} "
                        "(cast it, e.g. with .float() or .astype(np.float32))")
    if len(table.shape) != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {tuple(table.shape)}")
    return _arrays.to_numpy(table)


def _check_rows(x: np.ndarray, name: str) -> np.ndarray:
    """Top-1 class of each row of x, after checking every entry is finite and non-negative."""
    return _arrays.checked(x, name, None, float("inf")).top


class BayesTable:
    """A Partial Bayes lookup table prepared for matching.

    Args:
        table_clean: (N, C) clean predictions (Dirichlet draws around the
            attacker's estimates of the target's predictions).
        table_pert: (N, C) the defense's offline map applied to each row.

    Both may be numpy arrays, torch tensors (any device) or cupy arrays,
    float32 or float64, with finite non-negative entries (rows need not sum
    to 1: Rounding's outputs do not). They are converted to host arrays of
    their common dtype; a C-contiguous numpy array already in that dtype is
    used in place, so it must not be modified while the table is in use.
    Class partitions, the blocked layout of the scan, grouped tables and
    device copies are built on first use and kept; calls are thread-safe.
    """

    def __init__(self, table_clean: Any, table_pert: Any):
        clean = _host_table(table_clean, "table_clean")
        pert = _host_table(table_pert, "table_pert")
        if clean.shape != pert.shape:
            raise ValueError(f"table_clean and table_pert must have the same shape, got {tuple(clean.shape)} and "
                             f"{tuple(pert.shape)}")
        if clean.shape[0] == 0:
            raise ValueError(f"the table must have at least one row, got shape {tuple(clean.shape)}")
        if clean.shape[1] == 0:
            raise ValueError(f"the table must have at least one column, got shape {tuple(clean.shape)}")
        dtype = np.promote_types(clean.dtype, pert.dtype)
        self._clean = np.ascontiguousarray(clean, dtype=dtype)
        self._pert = np.ascontiguousarray(pert, dtype=dtype)
        self._top = _check_rows(self._clean, "table_clean")
        _check_rows(self._pert, "table_pert")
        index_type = _C.BayesIndex32 if dtype == np.float32 else _C.BayesIndex64
        self._index = index_type(self._clean, self._pert, self._top)
        self._lock = threading.Lock()
        self._on_device: dict[tuple, tuple] = {}

    @property
    def num_rows(self) -> int:
        return int(self._clean.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self._clean.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """The compute dtype: distances are summed in it."""
        return self._clean.dtype

    def __repr__(self) -> str:
        return f"BayesTable(num_rows={self.num_rows}, num_classes={self.num_classes}, dtype={self.dtype.name!r})"

    def num_groups(self, top1_filter: bool = True) -> int:
        """Distinct (clean top-1 class, perturbed value) pairs, or distinct perturbed values without the filter.

        Builds and keeps the grouped table: G x C values plus G x C float64
        clean sums, so on a continuous table (G = N) it costs more memory
        than the table itself.
        """
        return int(self._index.group_count(_flag(top1_filter, "top1_filter"), self.num_rows))

    def recover(self, received: Any, delta: float = DEFAULT_DELTA, top1_filter: bool = True,
                method: str = "auto") -> Any:
        """Recovered predictions for received (defended) ones; see the module docstring.

        Args:
            received: (B, C) or (C,) defended predictions: numpy, torch (any
                device) or cupy, float32 or float64, finite and non-negative.
            delta: matching tolerance (>= 0); rows within max(delta, nearest
                distance) are averaged.
            top1_filter: match only rows of the received top-1 class. Valid
                only against defenses that preserve the top-1 class.
            method: "auto", "general" or "grouped".

        Returns the recovered predictions with the type, device, dtype and
        shape of `received`. A row whose class has no table row is returned
        unchanged.
        """
        delta = real_number(delta, "delta")
        if delta < 0:
            raise ValueError(f"delta must be >= 0, got {delta}")
        by_class = _flag(top1_filter, "top1_filter")
        method = choice(method, "method", METHODS)
        batch = _arrays.prepare(received, "received", self.num_classes)
        grouped = self._use_groups(method, by_class)
        if batch.on_cuda:
            out = self._recover_cuda(batch.data, delta, by_class, grouped)
        else:
            out = self._recover_cpu(batch.data, delta, by_class, grouped, "auto")
        return _arrays.restore(out, batch)

    def _use_groups(self, method: str, by_class: bool) -> bool:
        if method != "auto":
            return method == "grouped"
        return self._index.group_count(by_class, self.num_rows // 2) >= 0

    def _recover_cpu(self, x: np.ndarray, delta: float, by_class: bool, grouped: bool, isa: str) -> np.ndarray:
        """Float64 answers for a C-contiguous host batch `x` in the caller's dtype."""
        top = _check_rows(x, "received")
        data = np.ascontiguousarray(x, dtype=self.dtype)
        out = np.empty(x.shape, dtype=np.float64)
        count = np.empty(x.shape[0], dtype=np.int64)
        self._index.match(data, top if by_class else None, delta, grouped, _ISA_CODES[isa], out, count)
        empty = count == 0
        out[empty] = x[empty]
        return out

    def _device_table(self, device, by_class: bool, grouped: bool) -> tuple:
        """(perturbed rows, clean rows or group sums, group counts or None, class offsets, largest class).

        Rows are sorted by clean top-1 class; without the class filter the same
        rows form one part.
        """
        import torch

        key = (str(device), grouped and by_class, grouped)
        with self._lock:
            if key not in self._on_device:
                if grouped:
                    values, sums, counts, part = self._index.grouped_arrays(by_class)
                    arrays = (values, sums, counts)
                else:
                    part = self._top
                    order = np.argsort(part, kind="stable")
                    arrays = (self._pert[order], self._clean[order], None)
                sizes = np.bincount(part, minlength=self.num_classes)
                moved = tuple(None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)
                              for a in arrays)
                self._on_device[key] = (moved, sizes)
            arrays, sizes = self._on_device[key]
        if not by_class:
            sizes = np.array([sizes.sum()])
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return (*arrays, torch.from_numpy(offsets).to(device), int(sizes.max()))

    def _recover_cuda(self, x, delta: float, by_class: bool, grouped: bool):
        """Float64 answers for a contiguous CUDA tensor `x` in the caller's dtype."""
        import torch

        require_cuda("received")
        B, C = x.shape
        device = x.device
        bad = ~torch.isfinite(x) | (x < 0)
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            value = float(x[row, col])
            code = ROW_NEGATIVE if np.isfinite(value) else ROW_NON_FINITE
            raise_row_error("received", row, code, col, value, float("inf"))
        dtype = torch.float32 if self.dtype == np.float32 else torch.float64
        data = x.to(dtype).contiguous()
        parts = C if by_class else 1
        part = torch.argmax(x, dim=1) if by_class else torch.zeros(B, dtype=torch.int64, device=device)
        order = torch.argsort(part, stable=True)
        per_part = torch.bincount(part, minlength=parts).cpu().numpy()
        starts = np.concatenate(([0], np.cumsum(per_part)))
        tiles = [(p, s, min(s + _CUDA_TILE_QUERIES, starts[p + 1]))
                 for p in range(parts) for s in range(starts[p], starts[p + 1], _CUDA_TILE_QUERIES)]
        tile_part, tile_begin, tile_end = (torch.tensor(col, dtype=torch.int64, device=device)
                                           for col in zip(*tiles))
        pert, clean, counts, offsets, max_rows = self._device_table(device, by_class, grouped)
        dmin = torch.full((B,), float("inf"), dtype=dtype, device=device)
        sums = torch.zeros((B, C), dtype=torch.float64, device=device)
        matched = torch.zeros(B, dtype=torch.int64, device=device)
        with torch.cuda.device(device):
            _C.bayes_match_cuda(data.data_ptr(), C, 0 if dtype == torch.float32 else 1, order.data_ptr(),
                                tile_part.data_ptr(), tile_begin.data_ptr(), tile_end.data_ptr(), len(tiles),
                                pert.data_ptr(), offsets.data_ptr(), max_rows, clean.data_ptr(),
                                0 if counts is None else counts.data_ptr(), delta, dmin.data_ptr(), sums.data_ptr(),
                                matched.data_ptr(), torch.cuda.current_stream(device).cuda_stream)
        out = sums / matched.clamp(min=1).unsqueeze(1).to(torch.float64)
        empty = matched == 0
        out[empty] = x[empty].to(torch.float64)
        return out


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def bayes_recover(received: Any, table_clean: Any, table_pert: Any, delta: float = DEFAULT_DELTA,
                  top1_filter: bool = True, method: str = "auto") -> Any:
    """Partial Bayes recovery of received predictions from a lookup table.

    One-shot form of ``BayesTable(table_clean, table_pert).recover(received,
    delta, top1_filter, method)``; build a BayesTable to answer several
    batches with one table. See the module docstring for the rule, the
    precision and the methods.
    """
    return BayesTable(table_clean, table_pert).recover(received, delta=delta, top1_filter=top1_filter,
                                                       method=method)
