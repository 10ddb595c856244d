"""ModelGuard-S: ordered incremental quantization (Algorithm 1 of the paper).

Each class t owns an append-only codebook. A prediction whose top-1 class is t
is answered with the lowest-index centroid of codebook t within L1 distance
eps; when there is none it is appended and returned unchanged. Batches give
bit for bit the answers of a row-by-row run, including rows answered by a
centroid that an earlier row of the same batch created.

Distances are L1 sums in the guard's dtype (float32 by default), in a fixed
summation order shared by the CPU and GPU kernels; inputs of the other float
dtype are cast to it and the answers cast back.

The guard keeps its codebooks in memory and talks to where they live only
through a CodebookStore (modelguard_fast.stores): a LocalStore (memory, or
the journal of `journal=path`) or a store shared by replicas
(store=RedisStore(...)). The in-memory codebooks are always a prefix of the
store's per-class logs, so a hit is answered locally and only a batch that
creates centroids goes to the store: one atomic compare-and-append whose
reply also carries what other replicas appended (on a conflict the guard
adopts those and redoes the batch). Every answer therefore equals that of
one global sequential order of all calls on the store, and no answer uses a
centroid the store has not acknowledged.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np
import torch
from torch.utils.dlpack import to_dlpack

from .. import _arrays, _kernels, params
from .._kernels import C as _C
from .._validation import choice, float_dtype, positive_int, raise_row_error
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from ..ops.mgs import packed_to_device, search_cuda
from ..persistence import SnapshotError, read_snapshot, write_snapshot
from ..stores import CodebookStore, LocalStore, StoreUnavailable
from ..stores.base import records_of
from . import _forksafe
from .modelguard_s_frozen import FrozenModelGuardS

ORDERS = ("first", "nearest")
_MODE = {"first": 0, "nearest": 1, "offline": 2}
SNAPSHOT_FORMAT = "modelguard_fast.ModelGuardS"
SNAPSHOT_VERSION = 2  # 2: optional HMAC, max_centroids and centroid_warning; version 1 files still load
STATE_VERSION = 1  # of state_dict()

log = logging.getLogger(__name__)
# Compare-and-append conflicts tolerated for one call before giving up (each
# one means another replica appended to a class this batch touches).
MAX_CONFLICTS = 64


class _Conflict(Exception):
    """Another guard appended to a touched class first; the local codebooks were caught up."""


class CapacityError(RuntimeError):
    """A call would grow a class codebook beyond the guard's max_centroids; nothing was changed."""


# Read on every call (module globals are cheaper than attribute chains).
_ndarray, _Tensor, _from_numpy = np.ndarray, torch.Tensor, torch.from_numpy


def _store_type(dtype: np.dtype):
    return _C.Codebooks32 if dtype == np.float32 else _C.Codebooks64


class _DeviceMirror:
    """The codebooks on one CUDA device, grown in place as they grow on the host.

    Class t's rows live in `codebook[starts[t]:starts[t] + capacity[t]]`, its
    first counts(t) rows uploaded. A refresh uploads only the rows appended
    since the last one. A class that outgrows its room moves, within the
    device, to a new room of twice its size at the end of the buffer (which
    itself doubles when full), so each row is copied O(1) times amortized and
    a refresh costs the rows appended, not the codebook size. Removing rows
    (truncate, reset, a new store) starts a fresh copy.
    """

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.store = None
        self.generation = -1
        self.codebook = None  # (capacity rows, C) tensor on the device
        self.used = 0  # rows of codebook handed out to classes
        self.starts_host = None  # int64 (C,): first row of each class's room
        self.capacity = None  # int64 (C,)
        self.uploaded = None  # int64 (C,): rows of each class on the device
        self.starts = self.ends = None  # int64 (C,) device tensors for the kernel

    def refresh(self, store, device) -> None:
        import torch

        if self.store is not store or self.generation != store.generation:
            C = store.num_classes
            self.store, self.generation, self.used = store, store.generation, 0
            self.codebook = None
            self.starts_host = np.zeros(C, dtype=np.int64)
            self.capacity = np.zeros(C, dtype=np.int64)
            self.uploaded = np.zeros(C, dtype=np.int64)
            self.starts = None
        counts = np.asarray(store.counts(), dtype=np.int64)
        grown = np.flatnonzero(counts != self.uploaded)
        if self.starts is not None and grown.size == 0:
            return
        if self.codebook is None:  # the kernel needs a valid pointer even when nothing is read
            self._move(0, max(2 * int(counts[0]), 16), device)
        for t in grown:
            if counts[t] > self.capacity[t]:
                self._move(t, max(2 * int(counts[t]), 16), device)
            rows = torch.from_numpy(store.class_rows(int(t), int(self.uploaded[t]), int(counts[t]))).to(device)
            begin = int(self.starts_host[t] + self.uploaded[t])
            self.codebook[begin : begin + rows.shape[0]] = rows
            self.uploaded[t] = counts[t]
        self.starts = torch.from_numpy(self.starts_host.copy()).to(device)
        self.ends = torch.from_numpy(self.starts_host + self.uploaded).to(device)

    def _move(self, t: int, capacity: int, device) -> None:
        """Gives class t a room of `capacity` rows at the end of the buffer, keeping its uploaded rows."""
        import torch

        C = len(self.capacity)
        size = 0 if self.codebook is None else self.codebook.shape[0]
        if self.used + capacity > size:
            grown = torch.empty((max(2 * size, self.used + capacity), C), dtype=torch.float32 if self.dtype == np.float32 else torch.float64,
                                device=device)
            if self.used:
                grown[: self.used] = self.codebook[: self.used]
            self.codebook = grown
        old, n = int(self.starts_host[t]), int(self.uploaded[t])
        if n:
            self.codebook[self.used : self.used + n] = self.codebook[old : old + n].clone()
        self.starts_host[t] = self.used
        self.capacity[t] = capacity
        self.used += capacity

    def rows(self, top: np.ndarray, index: np.ndarray):
        """The device rows holding centroid index[i] of class top[i], as a device tensor of row numbers."""
        import torch

        return torch.from_numpy(self.starts_host[top] + index).to(self.codebook.device)


class ModelGuardS(Defense):
    """Ordered incremental quantization with per-class codebooks.

    Args:
        num_classes: number of classes C.
        eps: L1 distortion budget, in [0, 2] (modelguard_fast.params says
            why; 0 merges only identical predictions).
        order: "first" (Algorithm 1, default) or "nearest" (answer with the
            nearest admissible centroid: the paper's leaky ablation).
        dtype: float32 (default) or float64; codebooks are stored and
            distances computed in it.
        sum_tol: rows must sum to 1 within this absolute tolerance.
        renormalize: rescale rows to sum 1 instead of refusing them.
            Rows are checked in the dtype they come in (see
            modelguard_fast._arrays.checked); float64 rows whose top-1 class
            the cast to a float32 guard would change (near-ties) are refused:
            use dtype="float64" for such predictions.
        journal: path of an append-only journal. Every new centroid is made
            durable there before the answer that uses it is returned; opening
            an existing journal restores the codebooks it records. The
            journal records the settings, sum_tol included, and must be
            reopened with the same (see modelguard_fast.persistence.journal
            for the file rules: torn tails, damage, format 1, symlinks).
        max_centroids: optional per-class capacity. A call that would add a
            centroid to a class already holding max_centroids is refused
            with CapacityError and changes nothing (no centroid, no answer,
            no statistics); other calls keep being answered. A journal or
            state holding more is refused. Each centroid costs C * itemsize
            bytes in host memory (40 bytes for C = 10 in float32; growth of
            the per-class arrays can reserve up to twice that), the same
            again on each CUDA device the guard served, C * itemsize + 52
            bytes in the journal, and search time grows with the codebook.
        centroid_warning: a per-class count at which a warning is logged
            (logger "modelguard_fast.defenses.modelguard_s"), once per class
            until reset(); default 80% of max_centroids, None without it.
        store: where the codebooks live, a modelguard_fast.stores.CodebookStore;
            default LocalStore(journal=journal) (memory, or the journal).
            A shared one, e.g. `RedisStore(url, name=...)`, is used by every
            replica of a model. Its recorded settings (sum_tol included) must
            equal this guard's (StoreError otherwise); order="nearest" is
            refused (its answers have no prefix property). A call that needs
            a new centroid while the store is unreachable raises
            StoreUnavailable and changes nothing; hits are still answered.
            `store=LocalStore(journal=path)` is the same as `journal=path`.

    Calls are thread-safe: concurrent calls are serialised, so every result
    equals that of some sequential order of the calls. Each row of a CPU input
    is read once (by the kernel, into a private copy that is checked, searched
    and filed; inputs that need a cast or renormalisation are copied whole at
    the start of the call), so a caller (or another thread) rewriting the
    array during the call cannot make the guard file a centroid under a class
    other than its top-1. os.fork() waits for
    calls in flight and the child gets a fresh lock; in the child a
    journal-bound guard refuses every call (it cannot write its parent's
    journal: open a new guard on another journal there).

    Copies: an in-memory guard pickles and deep-copies through its state
    (settings, codebooks and statistics; the copy is independent). A guard
    bound to a journal refuses to be copied (TypeError): two guards would
    then hand out answers from one protection state, each recording only
    its own. Snapshot files never use pickle.
    """

    name = "ModelGuard-S"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = True

    def __init__(self, num_classes: int, eps: float = 1.0, order: str = "first", dtype: Any = "float32",
                 sum_tol: float = DEFAULT_SUM_TOL, renormalize: bool = False,
                 journal: str | os.PathLike | None = None, max_centroids: int | None = None,
                 centroid_warning: int | None = None, store: CodebookStore | None = None):
        self.num_classes = positive_int(num_classes, "num_classes")
        self.eps = params.eps(eps)
        self.order = choice(order, "order", ORDERS)
        self._mode = _MODE[self.order]
        self.dtype = float_dtype(dtype)
        self.sum_tol = params.sum_tol(sum_tol)
        # What _arrays.checked holds rows of the guard's own dtype to: the tolerance of the
        # in-place path (_quantize_in_place), computed once (dtype names are slow to get).
        self._own_dtype_tol = params.row_sum_tolerance(self.sum_tol, self.dtype.name)
        self.renormalize = params.flag(renormalize, "renormalize")
        self.max_centroids = None if max_centroids is None else positive_int(max_centroids, "max_centroids")
        if centroid_warning is None and self.max_centroids is not None:
            centroid_warning = max(1, (4 * self.max_centroids) // 5)
        self.centroid_warning = None if centroid_warning is None else positive_int(centroid_warning, "centroid_warning")
        self._warned: set[int] = set()
        self._lock = threading.RLock()
        _forksafe.track(self, threading.RLock)
        self._store = _store_type(self.dtype)(self.num_classes)
        self._version = 0
        self._mirrors: dict[str, _DeviceMirror] = {}
        self.reset_stats()  # creates self._stats, which the call path uses directly
        self._closed = False
        store = self._resolve_store(journal, store)
        store.open(self._journal_meta())
        self._backing = store
        try:
            self._catch_up()
        except BaseException:
            store.close()
            raise

    def _resolve_store(self, journal, store) -> CodebookStore:
        """The CodebookStore of the constructor's journal= and store= (LocalStore(journal) without a store)."""
        if store is None:
            return LocalStore(journal=journal)
        if journal is not None:
            raise ValueError("pass journal or store, not both (journal=path is short for store=LocalStore(journal=path))")
        if not isinstance(store, CodebookStore):
            raise TypeError(f"store must be a modelguard_fast.stores.CodebookStore, got {type(store).__name__}")
        if store.shared and self.order != "first":
            raise ValueError(f"order={self.order!r} cannot use a shared store ({store.describe()}): only "
                             "order='first' answers from a prefix of the shared codebook are globally consistent")
        return store

    @property
    def codebook_store(self) -> CodebookStore:
        """The CodebookStore holding this guard's codebooks (a LocalStore for a guard of one process)."""
        return self._backing

    # ----------------------------------------------------------------- settings
    def _settings(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "eps": self.eps, "order": self.order, "dtype": self.dtype.name}

    def _journal_meta(self) -> dict[str, Any]:
        """What a journal records: the settings and sum_tol (the tolerance its centroids were checked with)."""
        return {**self._settings(), "sum_tol": self.sum_tol}

    def _record_bytes(self) -> int:
        return self.num_classes * self.dtype.itemsize

    def __repr__(self) -> str:
        return (f"ModelGuardS(num_classes={self.num_classes}, eps={self.eps}, order={self.order!r}, "
                f"dtype={self.dtype.name!r}, centroids={self.num_centroids})")

    def _changed(self) -> None:
        self._version += 1

    # ------------------------------------------------------------ the defense
    def __call__(self, probs: Any) -> Any:
        """Quantizes predictions; see the class docstring."""
        # What Codebooks.quantize_array may read in place: a numpy array, or a DLPack capsule of a
        # plain torch tensor (torch.utils.dlpack.to_dlpack: its memory, kept alive by the capsule;
        # never one with the negative bit set, which DLPack would export without the sign). The
        # kernel takes only C-contiguous host rows of the guard's dtype and answers None for the
        # rest (device tensors, other dtypes, strided), which take the general path below.
        view = None
        if not self.renormalize:
            if type(probs) is _ndarray:
                view = probs
            elif type(probs) is _Tensor and not probs.is_neg():
                try:
                    view = to_dlpack(probs)
                except (RuntimeError, TypeError, BufferError):  # sparse, meta, batched (vmap) tensors...
                    pass
        if view is not None:  # the common case, read in place by the kernel (no conversion layer)
            lock = self._lock
            lock.acquire()  # not `with`: this path is timed against one torch op (issue 14)
            try:
                self._check_usable()
                # A call whose rows are all valid hits is counted by the kernel (stats.kernel_tally) and
                # answered with the array alone; anything else comes back as _quantize_in_place's tuple.
                served = self._store.quantize_array(view, self.eps, self._mode, self._own_dtype_tol,
                                                    self._stats.kernel_tally)
                if served is None or type(served) is _ndarray:
                    out = served
                else:
                    try:
                        out = self._settled(self._own_dtype_tol, *served)
                    except _Conflict:  # the codebooks were caught up: redo the batch on them
                        out = self._retrying(self._quantize_in_place, view, conflicts=1)
            finally:
                lock.release()
            if out is not None:
                return out if view is probs else _from_numpy(out)
        # The general path. The kernel reads each row once (see Codebooks.quantize), but
        # renormalisation and casts read the caller's rows before it: a private copy of a CPU
        # array is what every later step reads, so another thread rewriting the array during
        # the call cannot file a centroid under a class that is not its top-1 (issue 12,
        # fault 9).
        probs = _arrays.private_copy(probs)
        batch = _arrays.checked(probs, "probs", self.num_classes, self.sum_tol, compute_dtype=self.dtype,
                                renormalize=self.renormalize, kernel_checks=True)
        tol = batch.kernel_sum_tol
        with self._lock:
            self._check_usable()
            out = self._retrying(self._quantize_cuda if batch.on_cuda else self._quantize_cpu, batch.data, tol)
        return _arrays.restore(out, batch)

    def _retrying(self, quantize, *args, conflicts: int = 0):
        """quantize(*args), redone on the caught-up codebooks after a shared store's compare-and-append
        conflict (`conflicts`: those this call met already)."""
        for _ in range(conflicts, MAX_CONFLICTS):
            try:
                return quantize(*args)
            except _Conflict:
                continue  # the codebooks were caught up: redo the batch on them
        raise StoreUnavailable(f"{self._backing.describe()}: {MAX_CONFLICTS} compare-and-append conflicts "
                               "in one call (other replicas keep appending to the same classes); "
                               "retry the call or use smaller batches")

    def _quantize_in_place(self, x: np.ndarray) -> np.ndarray | None:
        """_quantize_cpu on rows the kernel reads as they are (see __call__); None when it cannot.

        Such an array has the guard's dtype (quantize_array takes no other), so
        its rows are held to the tolerance _arrays.checked would give them.
        """
        served = self._store.quantize_array(x, self.eps, self._mode, self._own_dtype_tol)
        return None if served is None else self._settled(self._own_dtype_tol, *served)

    def _quantize_cpu(self, x: np.ndarray, sum_tol: float) -> np.ndarray:
        out = np.empty_like(x)
        return self._settled(sum_tol, out, *self._store.quantize(x, self.eps, self._mode, sum_tol, out))

    def _settled(self, sum_tol: float, out: np.ndarray, rows: int, check: tuple | None, total: float,
                 largest: float, appended) -> np.ndarray:
        """After a CPU quantize of `rows` rows: raises for a bad row (`check`: row, code, column, value),
        else commits the centroids appended and counts the answers."""
        if check is not None:
            raise_row_error("probs", *check, sum_tol, renormalize_hint=True)
        if appended is not None:
            classes, centroids = appended  # as the codebooks hold them: the input is never read again
            self._commit(centroids, classes)
        self._count(rows, total, largest)
        return out

    def _count(self, rows: int, total: float, largest: float) -> None:
        self.stats.record(rows, distortion_sum=total, distortion_max=largest)

    def _quantize_cuda(self, x, sum_tol: float) -> Any:
        import torch

        B = x.shape[0]
        device = x.device
        mirror = self._mirror(device)
        top, index, distance = search_cuda(x, mirror.codebook, mirror.starts, mirror.ends, self.eps, self.order,
                                           sum_tol, renormalize_hint=True)
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
            appended = self._store.settle(rows, sub_top, self.eps, self._mode, sum_tol,
                                          self._store.counts(), sub_index, sub_distance)
            index_h[pending] = sub_index
            distance_h[pending] = sub_distance
            if appended.size:
                self._commit(rows[appended], sub_top[appended])
            mirror = self._mirror(device)
        distance_h = distance_h.astype(np.float64)
        self._count(B, float(distance_h.sum()), float(distance_h.max()))
        return mirror.codebook.index_select(0, mirror.rows(top_h, index_h))

    def _mirror(self, device) -> _DeviceMirror:
        mirror = self._mirrors.setdefault(str(device), _DeviceMirror(self.dtype))
        mirror.refresh(self._store, device)
        return mirror

    def _check_usable(self) -> None:
        if self._closed:
            kind = "store" if self._backing.shared else "journal"
            raise RuntimeError(f"this guard's {kind} was closed; open a new guard on the {kind}")
        self._backing.check_usable()

    def _commit(self, rows: np.ndarray, classes: np.ndarray) -> None:
        """Makes the centroids just appended (`rows`, of `classes`, in order) durable, or undoes them.

        Undone, with CapacityError, when a class would exceed max_centroids.
        The store's reply also carries what other replicas appended: adopted
        after a successful append, and before the caller redoes the batch
        after a conflict (_Conflict). If they cannot be adopted (the store's
        error), the codebooks are left as before the batch, a prefix of the
        store's log (the append stays in the store).
        """
        self._changed()
        newer: list[tuple[int, bytes]] = []
        try:
            counts = np.asarray(self._store.counts(), dtype=np.int64)
            if self.max_centroids is not None and counts.max(initial=0) > self.max_centroids:
                full = int(np.argmax(counts > self.max_centroids))
                raise CapacityError(
                    f"class {full}'s codebook holds max_centroids={self.max_centroids} centroids; this call "
                    "would add another, so it was refused and nothing changed (raise max_centroids, or reset)")
            base = counts - np.bincount(classes, minlength=self.num_classes)
            appended, newer = self._backing.append(base, classes, rows)
            if not appended:
                raise _Conflict
        except BaseException as err:
            counts = np.asarray(self._store.counts()) - np.bincount(classes, minlength=self.num_classes)
            self._store.truncate(counts.tolist())
            self._changed()
            if isinstance(err, _Conflict):
                self._adopt(newer)  # then the caller redoes the batch
            raise
        try:
            self._adopt(newer)
        except BaseException:
            # The store logged `newer` before this append: without them the codebooks would
            # not be a log prefix (and every later exchange would be refused), so go back to
            # `base`, one; the next exchange fetches both again.
            self._store.truncate(base.tolist())
            self._changed()
            raise
        self._warn_if_full(counts)

    def _catch_up(self) -> None:
        """Appends what the store holds beyond the local codebooks (validated) to them."""
        self._adopt(self._backing.fetch(self._store.counts()))

    def _adopt(self, records: list[tuple[int, bytes]]) -> None:
        """Validates centroids read from the store (appended after the local ones, in log order per class)
        and appends them to the local codebooks; raises the store's error (StoreError, JournalError)
        for content that is not a valid codebook of this guard, changing nothing."""
        if not records:
            return
        source, error, size = self._backing.describe(), self._backing.error, self._record_bytes()
        classes = np.fromiter((k for k, _ in records), dtype=np.int64, count=len(records))
        if classes.min() < 0 or classes.max() >= self.num_classes or any(len(p) != size for _, p in records):
            raise error(f"{source} holds a record of a class outside [0, {self.num_classes}) or not of "
                        f"{size} bytes; refusing a corrupted codebook")
        rows = np.frombuffer(b"".join(p for _, p in records), dtype=self.dtype.newbyteorder("<"))
        rows = rows.astype(self.dtype).reshape(len(records), -1)
        if self.max_centroids is not None:
            try:
                self._check_capacity((np.asarray(self._store.counts()) + np.bincount(
                    classes, minlength=self.num_classes)).tolist(), source)
            except ValueError as err:
                raise error(str(err)) from None
        try:
            rows = self._checked_centroids(rows, classes, source)
        except ValueError as err:
            raise error(f"refusing a corrupted codebook: {err}") from None
        self._store.append_rows(classes, rows)
        self._changed()

    def refresh(self) -> int:
        """Fetches the centroids other replicas appended to the shared store since the last call; returns how many.

        Not needed for correctness (a miss fetches them by itself); it makes
        later calls hit locally. Raises StoreUnavailable if the store cannot
        be reached; 0 for a local guard.
        """
        with self._lock:
            if not self._backing.shared:
                return 0
            before = self._store.total()
            self._catch_up()
            return int(self._store.total() - before)

    def _warn_if_full(self, counts: np.ndarray) -> None:
        if self.centroid_warning is None:
            return
        for cls in np.flatnonzero(counts >= self.centroid_warning).tolist():
            if cls not in self._warned:
                self._warned.add(cls)
                log.warning("ModelGuardS: class %d's codebook holds %d centroids (warning at %d, max_centroids=%s)",
                            cls, counts[cls], self.centroid_warning, self.max_centroids)

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
    def mean_distortion(self) -> float:
        """Mean L1 distortion of every answer given since construction or reset (0 before any; stats)."""
        return self.stats.mean_distortion

    @property
    def max_distortion(self) -> float:
        """Largest L1 distortion of an answer since construction or reset (stats.distortion_max)."""
        return self.stats.distortion_max

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Settings and codebooks as plain values and numpy arrays.

        Keys: format_version, num_classes, eps, order, dtype, "centroids"
        (n, C) in the guard's dtype, class by class, and "counts" (C,) int64.
        """
        with self._lock:
            codebook, offsets = self._store.pack()
            return {"format_version": STATE_VERSION, **self._settings(),
                    "centroids": codebook, "counts": np.diff(offsets)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replaces the codebooks with those of `state`, whose settings must match this guard's.

        Raises ValueError/TypeError (changing nothing) for a state of other
        settings, malformed codebooks, or more than max_centroids per class.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        version = state.get("format_version")
        if version != STATE_VERSION:
            raise ValueError(f"state format_version must be {STATE_VERSION}, got {version!r}")
        settings = {k: state.get(k) for k in self._settings()}
        if settings != self._settings():
            raise ValueError(f"state was saved with settings {settings}, this guard has {self._settings()}")
        classes, rows = self._validated_codebooks(state.get("centroids"), state.get("counts"))
        with self._lock:
            if self._backing.shared:
                raise ValueError(f"load_state_dict would bypass the shared store ({self._backing.describe()}); use "
                                 "ModelGuardS.load(snapshot, store=...) to fill a new, empty one")
            if self._backing.persistent:
                raise ValueError("load_state_dict would bypass the journal; open a new guard on a new journal "
                                 "and load the state there")
            backing = LocalStore()
            backing.open(self._journal_meta())
            backing.append(np.zeros(self.num_classes, dtype=np.int64), classes, rows)
            store = _store_type(self.dtype)(self.num_classes)
            store.append_rows(classes, rows)
            self._store, self._backing = store, backing
            self._changed()
            self.reset_stats()
            self._warned = set()

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
        exact = [int(c) for c in counts.tolist()]  # Python ints: a crafted sum cannot wrap around
        if min(exact) < 0 or sum(exact) != centroids.shape[0]:
            raise ValueError(f"state['counts'] must be non-negative and sum to {centroids.shape[0]}, got {counts}")
        self._check_capacity(exact, "state['counts']")
        classes = np.repeat(np.arange(C, dtype=np.int64), np.asarray(exact, dtype=np.int64))
        return classes, self._checked_centroids(centroids, classes, "state['centroids']")

    def _check_capacity(self, counts: list[int], source: str) -> None:
        if self.max_centroids is not None and max(counts, default=0) > self.max_centroids:
            raise ValueError(f"{source} holds {max(counts)} centroids in one class, more than "
                             f"max_centroids={self.max_centroids}")

    def _checked_centroids(self, rows: np.ndarray, classes: np.ndarray, source: str) -> np.ndarray:
        """`rows` as valid probability rows, each stored under its own top-1 class."""
        rows = np.ascontiguousarray(rows).view(self.dtype)  # the canonical dtype object (unpickled arrays lack it)
        top = np.empty(len(rows), np.int64)
        if rows.ndim != 2 or rows.shape[1] != self.num_classes or \
                (len(rows) and _kernels.check_rows(rows, self._own_dtype_tol, top)[0] >= 0):
            # _arrays.checked runs the same row check (and the shape checks) and raises its errors
            top = _arrays.checked(rows, source, self.num_classes, self.sum_tol).top
        if not np.array_equal(top, classes):
            raise ValueError(f"{source} holds a centroid under a class other than its top-1 class")
        return rows

    def save(self, path: str | os.PathLike, key: bytes | None = None) -> None:
        """Writes the settings and codebooks atomically to an .npz snapshot (no pickle).

        `key` (bytes, >= 16): adds an HMAC-SHA256 that load(..., key=) checks;
        without it the file carries only an unkeyed SHA-256, which detects
        accidental corruption, not tampering (see modelguard_fast.persistence.snapshot).
        A temporary left by a save killed midway is removed by the next save to `path`.
        """
        state = self.state_dict()
        arrays = {"centroids": state.pop("centroids"), "counts": state.pop("counts")}
        state.pop("format_version")
        state.update(sum_tol=self.sum_tol, renormalize=self.renormalize, max_centroids=self.max_centroids,
                     centroid_warning=self.centroid_warning)
        write_snapshot(path, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, state, arrays, key=key)

    @classmethod
    def load(cls, path: str | os.PathLike, journal: str | os.PathLike | None = None,
             key: bytes | None = None, store: CodebookStore | None = None) -> "ModelGuardS":
        """Reads a snapshot written by save(); refuses corrupted or unknown files.

        Raises SnapshotError for every file that is not a sound snapshot (with
        `key`, also for one without a valid HMAC), FileNotFoundError for a
        missing one. With `journal`, the snapshot's codebooks are written to a
        new journal at that path, which appears complete or not at all
        (JournalError if the path exists; a load killed midway leaves no
        journal, so a retry starts afresh).
        """
        meta, arrays = read_snapshot(path, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, key=key)
        missing = {"num_classes", "eps", "order", "dtype"} - set(meta)
        missing |= {"centroids", "counts"} - set(arrays)
        if missing:
            raise SnapshotError(f"{path} lacks {sorted(missing)}; it is not a complete ModelGuardS snapshot")
        C, centroids, counts = meta["num_classes"], arrays["centroids"], arrays["counts"]
        if centroids.ndim != 2 or counts.shape != (centroids.shape[1],) or C != centroids.shape[1]:
            raise SnapshotError(f"{path} declares num_classes={C!r} but holds centroids of shape {centroids.shape} "
                                f"and counts of shape {counts.shape}")
        try:
            guard = cls(meta["num_classes"], eps=meta["eps"], order=meta["order"], dtype=meta["dtype"],
                        sum_tol=meta.get("sum_tol", DEFAULT_SUM_TOL), renormalize=meta.get("renormalize", False),
                        max_centroids=meta.get("max_centroids"), centroid_warning=meta.get("centroid_warning"))
            guard.load_state_dict({"format_version": STATE_VERSION, **guard._settings(), **arrays})
        except (ValueError, TypeError) as err:
            raise SnapshotError(f"{path} holds invalid settings or codebooks: {err}") from None
        if journal is not None:
            state = guard.state_dict()
            classes = np.repeat(np.arange(guard.num_classes), state["counts"])
            guard._backing = LocalStore.create(journal, guard._journal_meta(),
                                               records_of(classes, state["centroids"], guard.dtype))
        if store is not None:
            return guard._copy_into(store)
        return guard

    def _copy_into(self, store: CodebookStore) -> "ModelGuardS":
        """A guard with this one's settings on the shared `store`, which must be empty, filled with this
        guard's codebooks by one atomic append."""
        bound = type(self)(self.num_classes, eps=self.eps, order=self.order, dtype=self.dtype, sum_tol=self.sum_tol,
                           renormalize=self.renormalize, max_centroids=self.max_centroids,
                           centroid_warning=self.centroid_warning, store=store)
        if bound.num_centroids:
            bound.close()
            raise ValueError(f"{store.describe()} already holds {bound.num_centroids} centroids; "
                             "only an empty store can be filled")
        with self._lock:
            codebook, offsets = self._store.pack()
        classes = np.repeat(np.arange(self.num_classes), np.diff(offsets))
        bound._store.append_rows(classes, codebook)
        try:
            bound._commit(codebook, classes)
        except _Conflict:
            bound.close()
            raise ValueError(f"{store.describe()} was filled by another guard meanwhile") from None
        return bound

    def reset(self) -> None:
        """Forgets every centroid and statistic (and empties the journal, if any).

        A journal is replaced atomically (its symlink, if it was opened through
        one, keeps pointing at it). Raises RuntimeError on a closed guard and
        JournalError when the journal cannot be replaced; the old journal and
        the codebooks are then unchanged.
        """
        with self._lock:
            self._check_usable()
            if self._backing.shared:
                raise ValueError(f"reset() would change answers other replicas gave from {self._backing.describe()}; "
                                 "a shared codebook is never reset (use a new store name)")
            try:
                self._backing.reset()
            finally:
                if not self._backing.counts().any():  # emptied, even if syncing the journal's folder failed
                    self._store.clear()
                    self._changed()
            self.reset_stats()
            self._warned = set()

    def close(self) -> None:
        """Closes the store (journal, Redis connection); a guard with a journal or shared store then refuses
        further calls."""
        with self._lock:
            self._backing.close()
            self._closed = self._backing.persistent

    # ------------------------------------------------------------------ copies
    def __getstate__(self) -> dict[str, Any]:
        if self._backing.shared:
            raise TypeError(f"a ModelGuardS bound to {self._backing.describe()} cannot be copied or pickled: open "
                            "another guard on the same store instead")
        if self._backing.persistent:
            raise TypeError(f"a ModelGuardS bound to {self._backing.describe()} cannot be copied or pickled: two "
                            "guards would answer from one protection state, each recording only its own centroids; "
                            "copy its codebooks explicitly with state_dict()/load_state_dict() if that is intended")
        with self._lock:
            return {"settings": {"num_classes": self.num_classes, "eps": self.eps, "order": self.order,
                                 "dtype": self.dtype.name, "sum_tol": self.sum_tol, "renormalize": self.renormalize,
                                 "max_centroids": self.max_centroids, "centroid_warning": self.centroid_warning},
                    "state": self.state_dict(),
                    "stats": self.stats.snapshot()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["settings"])
        self.load_state_dict(state["state"])
        self.stats.load(state["stats"])

    def frozen(self) -> "FrozenModelGuardS":
        """A read-only snapshot of the codebooks implementing the attacker's offline map."""
        with self._lock:
            codebook, offsets = self._store.pack()
        return FrozenModelGuardS(codebook, offsets, self.eps, self.sum_tol)

    def offline_map(self) -> "FrozenModelGuardS":
        """The attacker's offline map (Defense.offline_map): frozen(), the codebooks as they are now."""
        return self.frozen()
