"""A read-only snapshot of ModelGuard-S codebooks: the attacker's offline map."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _arrays, params
from ..defense import Defense
from ..ops.mgs import check_packed, indexed_store, packed_to_device, search_cuda, search_indexed


class FrozenModelGuardS(Defense):
    """Maps predictions as the attacker of the paper's Bayes attack does.

    Each row gets the first centroid of its top-1 class within eps, else the
    nearest centroid of that class; nothing is ever inserted. A row whose
    class codebook is empty is returned unchanged (Algorithm 1 would have
    made it that class's first centroid).

    Args:
        codebook, offsets: packed codebooks (see modelguard_fast.ops.mgs):
            every centroid a valid probability row, filed under its own top-1
            class, else ValueError.
        eps: L1 budget, in [0, 2] (modelguard_fast.params).
        sum_tol: rows must sum to 1 within this tolerance, in [0, 1).

    float64 rows given to a float32 codebook whose top-1 class the cast
    would change are refused (as ModelGuardS refuses them).
    """

    name = "ModelGuard-S (frozen)"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = True

    def __init__(self, codebook: np.ndarray, offsets: np.ndarray, eps: float, sum_tol: float):
        self.eps = params.eps(eps)
        self.sum_tol = params.sum_tol(sum_tol)
        codebook, offsets = check_packed(codebook, offsets, self.sum_tol)
        self.codebook = codebook.copy()
        self.offsets = offsets.copy()
        self.codebook.setflags(write=False)
        self.offsets.setflags(write=False)
        self.num_classes = self.codebook.shape[1]
        self._store = indexed_store(self.codebook, self.offsets)  # CPU search, sublinear in the codebook size
        self._on_device: dict[str, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"FrozenModelGuardS(num_classes={self.num_classes}, eps={self.eps}, centroids={len(self.codebook)})"

    def _batch(self, probs: Any) -> _arrays.Batch:
        return _arrays.checked(probs, "probs", self.num_classes, self.sum_tol, compute_dtype=self.codebook.dtype,
                               kernel_checks=True)

    def _search(self, batch: _arrays.Batch) -> tuple[Any, Any, Any]:
        if not batch.on_cuda:
            return search_indexed(batch.data, self._store, self.eps, "offline", batch.kernel_sum_tol, batch.top)
        key = str(batch.data.device)
        if key not in self._on_device:
            self._on_device[key] = packed_to_device(self.codebook, self.offsets, batch.data.device)
        cb, off = self._on_device[key]
        return search_cuda(batch.data, cb, off[:-1], off[1:], self.eps, "offline", batch.kernel_sum_tol)

    def assign(self, probs: Any) -> tuple[Any, Any, Any]:
        """(top-1 class, index in that class's codebook or -1, L1 distance) per row."""
        return self._search(self._batch(probs))

    def __call__(self, probs: Any) -> Any:
        batch = self._batch(probs)
        top, index, _ = self._search(batch)
        out = self._answers(batch, top, index)
        self.stats.record(batch.rows)
        return _arrays.restore(out, batch)

    def replay(self, probs: Any, view: Any = None) -> tuple[Any, Any]:
        """(answers, keep) as Defense.replay: keep is False for the rows answered by a nearest centroid
        farther than eps, an answer the live ModelGuard-S never gives (it would have made the row a centroid)."""
        batch = self._batch(probs)
        top, index, distance = self._search(batch)
        out = self._answers(batch, top, index)
        if batch.on_cuda:
            keep = (index < 0) | (distance <= self.eps)
        else:
            keep = (index < 0) | (distance <= distance.dtype.type(self.eps))
        self.stats.record(batch.rows)
        return _arrays.restore(out, batch), _arrays.restore_mask(keep, batch)

    def _answers(self, batch: _arrays.Batch, top: Any, index: Any) -> Any:
        """The rows of batch with each row that has a centroid (index >= 0) replaced by it."""
        if batch.on_cuda:
            cb, off = self._on_device[str(batch.data.device)]
            out = batch.data.clone()
            rows = (index >= 0).nonzero().flatten()
            out[rows] = cb[off[top[rows]] + index[rows]]
        else:
            out = batch.data.copy()
            rows = np.flatnonzero(index >= 0)
            out[rows] = self.codebook[self.offsets[top[rows]] + index[rows]]
        return out
