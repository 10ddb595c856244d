"""ModelGuard-S: ordered incremental quantization (Algorithm 1 of the paper).

Each class t owns an append-only codebook. A prediction whose top-1 class is t
is answered with the lowest-index centroid of codebook t within L1 distance
eps; when there is none it is appended and returned unchanged. Batches give
bit for bit the answers of a row-by-row run, including rows answered by a
centroid that an earlier row of the same batch created.

Distances are L1 sums in the guard's dtype (float32 by default), in a fixed
summation order shared by the CPU and GPU kernels; inputs of the other float
dtype are cast to it and the answers cast back.

The codebooks live in a store (modelguard_fast.stores): in memory, a journal
file, or Redis shared by replicas. The guard's in-memory codebooks are always
a prefix of the store's per-class logs, so a hit is answered locally and only
a row that creates a centroid goes to the store (an atomic compare-and-append;
on conflict the guard fetches what others appended and redoes the batch).
Every answer therefore equals that of one global sequential order of all
calls on the store, and no answer uses a centroid the store has not
acknowledged.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from .. import _C
from .. import _arrays
from .._validation import (
    DEFAULT_SUM_TOL,
    check_probability_rows as _check_rows,
    choice,
    eps_value,
    float_dtype,
    positive_int,
    raise_row_error,
    real_number,
)
from ..ops.mgs import packed_to_device, search_cuda
from ..persistence import read_snapshot, write_snapshot
from ..stores import CodebookStore, LocalStore, StoreError, StoreUnavailable
from .base import Defense
from .modelguard_s_frozen import FrozenModelGuardS

ORDERS = ("first", "nearest")
_MODE = {"first": 0, "nearest": 1, "offline": 2}
SNAPSHOT_FORMAT = "modelguard_fast.ModelGuardS"
SNAPSHOT_VERSION = 1
# Compare-and-append conflicts tolerated for one call before giving up (each
# one means another replica appended to a class this batch touches).
MAX_CONFLICTS = 64


class _Conflict(Exception):
    """Another guard appended to a touched class first; the local codebooks were caught up."""


def _store_type(dtype: np.dtype):
    return _C.Codebooks32 if dtype == np.float32 else _C.Codebooks64


class _DeviceMirror:
    """Packed copy of the codebooks on one CUDA device, refreshed when they change."""

    def __init__(self):
        self.version = -1
        self.codebook = None
        self.offsets = None
        self.offsets_host = None

    def refresh(self, store, version: int, device) -> None:
        if self.version == version:
            return
        codebook, offsets = store.pack()
        self.codebook, self.offsets = packed_to_device(codebook, offsets, device)
        self.offsets_host = offsets
        self.version = version


class ModelGuardS(Defense):
    """Ordered incremental quantization with per-class codebooks.

    Args:
        num_classes: number of classes C.
        eps: L1 distortion budget, in (0, 2].
        order: "first" (Algorithm 1, default) or "nearest" (answer with the
            nearest admissible centroid: the paper's leaky ablation).
        dtype: float32 (default) or float64; codebooks are stored and
            distances computed in it.
        sum_tol: rows must sum to 1 within this absolute tolerance.
        renormalize: rescale rows to sum 1 instead of refusing them.
        journal: path of an append-only journal. Every new centroid is made
            durable there before the answer that uses it is returned; opening
            an existing journal restores the codebooks it records. Short form
            of `store=LocalStore(journal=path)`.
        store: a CodebookStore holding the codebooks, e.g.
            `modelguard_fast.stores.RedisStore(url, name=...)` shared by every
            replica of a model. Its recorded settings must equal this guard's
            (StoreError otherwise); order="nearest" is refused for shared
            stores (its answers have no prefix property).

    Calls are thread-safe: concurrent calls are serialised, so every result
    equals that of some sequential order of the calls. With a shared store,
    every answer of every guard on it equals that of one global sequential
    order (the store's append order). A call that needs a new centroid while
    the store is unreachable raises StoreUnavailable and changes nothing;
    calls answered from the local codebooks are still served.
    """

    name = "ModelGuard-S"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = True

    def __init__(self, num_classes: int, eps: float = 1.0, order: str = "first", dtype: Any = "float32",
                 sum_tol: float = DEFAULT_SUM_TOL, renormalize: bool = False,
                 journal: str | os.PathLike | None = None, store: CodebookStore | None = None):
        self.num_classes = positive_int(num_classes, "num_classes")
        self.eps = eps_value(eps)
        self.order = choice(order, "order", ORDERS)
        self.dtype = float_dtype(dtype)
        self.sum_tol = real_number(sum_tol, "sum_tol")
        if self.sum_tol < 0:
            raise ValueError(f"sum_tol must be >= 0, got {self.sum_tol}")
        if not isinstance(renormalize, bool):
            raise TypeError(f"renormalize must be a bool, got {renormalize!r}")
        self.renormalize = renormalize
        self._lock = threading.RLock()
        self._store = _store_type(self.dtype)(self.num_classes)
        self._version = 0
        self._mirrors: dict[str, _DeviceMirror] = {}
        self._reset_stats()
        self._closed = False
        self._backing = self._bind_store(journal, store)
        self._catch_up()

    def _bind_store(self, journal, store) -> CodebookStore:
        if journal is not None and store is not None:
            raise ValueError("pass journal or store, not both (journal=path is short for store=LocalStore(journal=path))")
        if store is None:
            store = LocalStore(journal=journal)
        elif not isinstance(store, CodebookStore):
            raise TypeError(f"store must be a modelguard_fast.stores.CodebookStore, got {type(store).__name__}")
        if store.shared and self.order != "first":
            raise ValueError(f"order={self.order!r} cannot use a shared store ({store.describe()}): only "
                             "order='first' answers from a prefix of the shared codebook are globally consistent")
        store.open(self._store_settings())
        return store

    def _store_settings(self) -> dict[str, Any]:
        return {**self._settings(), "sum_tol": self.sum_tol}

    @property
    def codebook_store(self) -> CodebookStore:
        """The CodebookStore holding this guard's codebooks."""
        return self._backing

    # ----------------------------------------------------------------- settings
    def _settings(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "eps": self.eps, "order": self.order, "dtype": self.dtype.name}

    def __repr__(self) -> str:
        return (f"ModelGuardS(num_classes={self.num_classes}, eps={self.eps}, order={self.order!r}, "
                f"dtype={self.dtype.name!r}, centroids={self.num_centroids})")

    def _reset_stats(self) -> None:
        self._queries = 0
        self._distortion_sum = 0.0
        self._distortion_max = 0.0

    def _changed(self) -> None:
        self._version += 1

    # ------------------------------------------------------------ the defense
    def __call__(self, probs: Any) -> Any:
        """Quantizes predictions; see the class docstring."""
        batch = _arrays.prepare(probs, "probs", self.num_classes, self.dtype)
        if self.renormalize:
            _arrays.renormalize_rows(batch, "probs")
        with self._lock:
            if self._closed:
                kind = "journal" if isinstance(self._backing, LocalStore) else "store"
                raise RuntimeError(f"this guard's {kind} was closed; open a new guard on the {kind} "
                                   f"({self._backing.describe()})")
            for _ in range(MAX_CONFLICTS):
                try:
                    if batch.on_cuda:
                        out, total, largest = self._quantize_cuda(batch.data)
                    else:
                        out, total, largest = self._quantize_cpu(batch.data)
                    break
                except _Conflict:
                    continue  # the codebooks were caught up: redo the batch on them
            else:
                raise StoreUnavailable(f"{self._backing.describe()}: {MAX_CONFLICTS} compare-and-append conflicts "
                                       "in one call (other replicas keep appending to the same classes); "
                                       "retry the call or use smaller batches")
            self._queries += batch.rows
            self._distortion_sum += total
            self._distortion_max = max(self._distortion_max, largest)
        return _arrays.restore(out, batch)

    def _quantize_cpu(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        out = np.empty_like(x)
        (row, code, col, value), total, largest, appended = self._store.quantize(
            x, self.eps, _MODE[self.order], self.sum_tol, out)
        if row >= 0:
            raise_row_error("probs", row, code, col, value, self.sum_tol)
        if appended is not None:
            self._commit(x[appended], x[appended].argmax(axis=1))
        return out, total, largest

    def _quantize_cuda(self, x) -> tuple[Any, float, float]:
        import torch

        B = x.shape[0]
        device = x.device
        mirror = self._mirror(device)
        top, index, distance = search_cuda(x, mirror.codebook, mirror.offsets, self.eps, self.order, self.sum_tol)
        top_h = top.cpu().numpy()
        index_h = index.cpu().numpy()
        distance_h = distance.cpu().numpy()
        misses = np.flatnonzero(index_h < 0)
        if misses.size:
            # Rows the existing codebooks could not answer are settled in stream
            # order on the host (only they can create centroids). The nearest
            # order needs every row, since new centroids can be nearer.
            pending = misses if self.order == "first" else np.arange(B)
            rows = x.index_select(0, torch.from_numpy(pending).to(device)).cpu().numpy()
            sub_top = top_h[pending]
            sub_index = index_h[pending]
            sub_distance = distance_h[pending]
            appended = self._store.settle(rows, sub_top, self.eps, _MODE[self.order], self._store.counts(),
                                          sub_index, sub_distance)
            index_h[pending] = sub_index
            distance_h[pending] = sub_distance
            if appended.size:
                self._commit(rows[appended], sub_top[appended])
            mirror = self._mirror(device)
        flat = torch.from_numpy(mirror.offsets_host[top_h] + index_h).to(device)
        distance_h = distance_h.astype(np.float64)
        return mirror.codebook.index_select(0, flat), float(distance_h.sum()), float(distance_h.max())

    def _mirror(self, device) -> _DeviceMirror:
        mirror = self._mirrors.setdefault(str(device), _DeviceMirror())
        mirror.refresh(self._store, self._version, device)
        return mirror

    def _commit(self, rows: np.ndarray, classes: np.ndarray) -> None:
        """Makes the centroids just appended locally (`rows`, of `classes`, in order) durable in the store.

        On a conflict (another guard appended to one of `classes` first) the
        local codebooks are cut back, caught up with the store, and _Conflict
        is raised so that the caller redoes the batch; on any failure they are
        cut back and the error propagates.
        """
        self._changed()
        counts = np.asarray(self._store.counts(), dtype=np.int64)
        base = counts - np.bincount(classes, minlength=self.num_classes)
        records = [(int(c), row.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
                   for c, row in zip(classes, rows)]
        try:
            acknowledged = self._backing.append(base.tolist(), records)
        except BaseException:
            self._store.truncate(base.tolist())
            self._changed()
            raise
        if not acknowledged:
            self._store.truncate(base.tolist())
            self._changed()
            self._catch_up()
            raise _Conflict

    def _catch_up(self) -> None:
        """Appends what the store holds beyond the local codebooks (validated) to them."""
        self._replay(self._backing.fetch(self._store.counts()))

    def refresh(self) -> int:
        """Fetches the centroids other replicas appended since the last call; returns how many.

        Not needed for correctness (a miss fetches them by itself); it makes
        later calls hit locally. Raises StoreUnavailable if the store cannot
        be reached.
        """
        with self._lock:
            before = self._store.total()
            self._catch_up()
            return int(self._store.total() - before)

    # ------------------------------------------------------------- inspection
    @property
    def num_centroids(self) -> int:
        with self._lock:
            return int(self._store.total())

    @property
    def centroid_counts(self) -> np.ndarray:
        """Number of centroids of each class codebook, shape (C,)."""
        with self._lock:
            return np.asarray(self._store.counts(), dtype=np.int64)

    def centroids(self, cls: int) -> np.ndarray:
        """A copy of class `cls`'s codebook, in order, shape (n, C)."""
        if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < self.num_classes:
            raise ValueError(f"cls must be a class index in [0, {self.num_classes}), got {cls!r}")
        with self._lock:
            return self._store.class_rows(int(cls))

    @property
    def num_queries(self) -> int:
        return self._queries

    @property
    def mean_distortion(self) -> float:
        """Mean L1 distortion of every answer given since construction or reset (0 before any)."""
        return self._distortion_sum / self._queries if self._queries else 0.0

    @property
    def max_distortion(self) -> float:
        return self._distortion_max

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Settings and codebooks as plain values and numpy arrays."""
        with self._lock:
            codebook, offsets = self._store.pack()
            return {"format_version": SNAPSHOT_VERSION, **self._settings(),
                    "centroids": codebook, "counts": np.diff(offsets)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replaces the codebooks with those of `state`, whose settings must match this guard's."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        version = state.get("format_version")
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"state format_version must be {SNAPSHOT_VERSION}, got {version!r}")
        settings = {k: state.get(k) for k in self._settings()}
        if settings != self._settings():
            raise ValueError(f"state was saved with settings {settings}, this guard has {self._settings()}")
        classes, rows = self._validated_codebooks(state.get("centroids"), state.get("counts"))
        with self._lock:
            if self._backing.persistent:
                raise ValueError(f"load_state_dict would bypass the store ({self._backing.describe()}); use "
                                 "ModelGuardS.load(snapshot, journal=... or store=...) to fill a new one")
            store = _store_type(self.dtype)(self.num_classes)
            store.append_rows(classes, rows)
            self._backing.reset()
            self._backing.append([0] * self.num_classes, [(int(c), row.tobytes()) for c, row in zip(classes, rows)])
            self._store = store
            self._changed()
            self._reset_stats()

    def _validated_codebooks(self, centroids, counts) -> tuple[np.ndarray, np.ndarray]:
        C = self.num_classes
        if not isinstance(centroids, np.ndarray) or centroids.ndim != 2 or centroids.shape[1] != C:
            raise ValueError(f"state['centroids'] must be an array of shape (n, {C}), got "
                             f"{getattr(centroids, 'shape', type(centroids).__name__)}")
        if centroids.dtype != self.dtype:
            raise ValueError(f"state['centroids'] must have dtype {self.dtype.name}, got {centroids.dtype}")
        if not isinstance(counts, np.ndarray) or counts.shape != (C,) or counts.dtype.kind not in "iu":
            raise ValueError(f"state['counts'] must be an integer array of shape ({C},), got "
                             f"{getattr(counts, 'shape', type(counts).__name__)}")
        if (counts < 0).any() or int(counts.sum()) != centroids.shape[0]:
            raise ValueError(f"state['counts'] must be non-negative and sum to {centroids.shape[0]}, got {counts}")
        classes = np.repeat(np.arange(C, dtype=np.int64), counts.astype(np.int64))
        return classes, self._checked_centroids(centroids, classes, "state['centroids']")

    def _checked_centroids(self, rows: np.ndarray, classes: np.ndarray, source: str) -> np.ndarray:
        """`rows` as valid probability rows, each stored under its own top-1 class."""
        rows = np.ascontiguousarray(rows)
        top = _check_rows(rows, source, self.sum_tol) if len(rows) else np.empty(0, np.int64)
        if not np.array_equal(top, classes):
            raise ValueError(f"{source} holds a centroid under a class other than its top-1 class")
        return rows

    def save(self, path: str | os.PathLike) -> None:
        """Writes the settings and codebooks atomically to an .npz snapshot (no pickle)."""
        state = self.state_dict()
        arrays = {"centroids": state.pop("centroids"), "counts": state.pop("counts")}
        state.pop("format_version")
        state["sum_tol"] = self.sum_tol
        state["renormalize"] = self.renormalize
        write_snapshot(path, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, state, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, journal: str | os.PathLike | None = None,
             store: CodebookStore | None = None) -> "ModelGuardS":
        """Reads a snapshot written by save(); refuses corrupted or unknown files.

        With `journal` (a new journal there, which must not exist yet) or
        `store` (which must be empty), the snapshot's codebooks are recorded
        in it, with one atomic append, before the guard is returned.
        """
        meta, arrays = read_snapshot(path, SNAPSHOT_FORMAT, SNAPSHOT_VERSION)
        settings = dict(num_classes=meta["num_classes"], eps=meta["eps"], order=meta["order"], dtype=meta["dtype"],
                        sum_tol=meta.get("sum_tol", DEFAULT_SUM_TOL), renormalize=meta.get("renormalize", False))
        guard = cls(**settings)
        guard.load_state_dict({"format_version": meta["format_version"], **guard._settings(), **arrays})
        if journal is None and store is None:
            return guard
        if journal is not None and os.path.exists(journal) and os.path.getsize(journal) > 0:
            raise ValueError(f"journal {journal} already exists; load() starts a new journal")
        return guard._copy_into(journal, store)

    def _copy_into(self, journal, store) -> "ModelGuardS":
        """A guard with this one's settings on `journal` or `store`, which must be empty, filled with this
        guard's codebooks by one atomic append."""
        bound = type(self)(self.num_classes, eps=self.eps, order=self.order, dtype=self.dtype,
                           sum_tol=self.sum_tol, renormalize=self.renormalize, journal=journal, store=store)
        if bound.num_centroids:
            bound.close()
            raise ValueError(f"{bound.codebook_store.describe()} already holds {bound.num_centroids} centroids; "
                             "only an empty store can be filled")
        with self._lock:
            codebook, offsets = self._store.pack()
        classes = np.repeat(np.arange(self.num_classes), np.diff(offsets))
        bound._store.append_rows(classes, codebook)
        try:
            bound._commit(codebook, classes)
        except _Conflict:
            bound.close()
            raise ValueError(f"{bound.codebook_store.describe()} was filled by another guard meanwhile") from None
        return bound

    def reset(self) -> None:
        """Forgets every centroid and statistic (and empties the journal, if any)."""
        with self._lock:
            if self._backing.shared:
                raise ValueError(f"reset() would change answers other replicas gave from {self._backing.describe()}; "
                                 "a shared codebook is never reset (use a new store name)")
            self._backing.reset()
            self._store.clear()
            self._changed()
            self._reset_stats()

    def _replay(self, records: list[tuple[int, bytes]]) -> None:
        if not records:
            return
        source = self._backing.describe()
        row_bytes = self.num_classes * self.dtype.itemsize
        classes = np.array([k for k, _ in records], dtype=np.int64)
        if (classes < 0).any() or (classes >= self.num_classes).any() or any(len(p) != row_bytes for _, p in records):
            raise StoreError(f"{source} holds a record of a class outside [0, {self.num_classes}) or not of "
                             f"{row_bytes} bytes; refusing a corrupted codebook")
        rows = np.frombuffer(b"".join(p for _, p in records), dtype=self.dtype.newbyteorder("<"))
        rows = rows.astype(self.dtype).reshape(len(records), -1)
        try:
            rows = self._checked_centroids(rows, classes, source)
        except ValueError as err:
            raise StoreError(f"refusing a corrupted codebook: {err}") from None
        self._store.append_rows(classes, rows)
        self._changed()

    def close(self) -> None:
        """Closes the store (the journal, if any); a guard whose journal or shared store was closed refuses calls."""
        with self._lock:
            self._backing.close()
            if self._backing.persistent:
                self._closed = True

    def frozen(self) -> "FrozenModelGuardS":
        """A read-only snapshot of the codebooks implementing the attacker's offline map."""
        with self._lock:
            codebook, offsets = self._store.pack()
        return FrozenModelGuardS(codebook, offsets, self.eps, self.sum_tol)
