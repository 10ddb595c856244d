"""The codebook store interface: where ModelGuard-S's append-only codebooks live durably.

A guard keeps its codebooks in memory (the C++ `Codebooks`) as a cache of its
store. The store holds, per class, an append-only log of centroids (raw
little-endian rows of the guard's dtype). Because codebooks only grow and
Algorithm 1 answers with the *first* admissible centroid, a guard whose cache
is a prefix of every class log answers a hit exactly as the store's global
order would; only a miss must reach the store, through `append`, an atomic
compare-and-append (ModelGuard paper, Algorithm 1 and Section 3.5 on why one
prediction must always get the same answer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

STORE_FORMAT_VERSION = 2
SETTING_KEYS = ("num_classes", "eps", "order", "dtype", "sum_tol")


class StoreError(ValueError):
    """A store that cannot be trusted: other settings, corrupted or foreign content under its name."""


class StoreUnavailable(RuntimeError):
    """The store could not be reached, could not serve now (e.g. busy, or mid-failover), or did not
    acknowledge a write within its timeouts.

    Raised only for calls that need the store: a row that would create a new
    centroid. Nothing was appended to the guard's codebooks.
    """


def row_bytes(settings: dict[str, Any]) -> int:
    """Bytes of one stored centroid: num_classes values of the settings' dtype."""
    return int(settings["num_classes"]) * np.dtype(settings["dtype"]).itemsize


def records_of(classes: np.ndarray, rows: np.ndarray, dtype: Any) -> list[tuple[int, bytes]]:
    """(class, raw little-endian row of `dtype`) pairs: how stores keep centroids."""
    raw = np.ascontiguousarray(rows, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    size = len(raw) // len(classes) if len(classes) else 0
    return [(int(c), raw[i * size : (i + 1) * size]) for i, c in enumerate(np.asarray(classes).tolist())]


def check_settings(found: dict[str, Any], wanted: dict[str, Any], where: str) -> None:
    """Raises StoreError naming both when the recorded settings differ from the guard's."""
    if found != wanted:
        raise StoreError(f"{where} holds a codebook written with settings {found}, "
                         f"but this guard has {wanted}; open it with the same settings or use another name")


class CodebookStore(ABC):
    """Durable per-class append-only centroid logs shared by the guards opened on them.

    Records are `(cls, payload)` pairs: `payload` is one centroid's raw bytes
    (num_classes values of the settings' dtype, little-endian), `cls` its
    class. Implementations: `LocalStore` (one process: memory, optionally a
    journal file) and `RedisStore` (any number of processes and machines).
    """

    #: True when other guards (other processes) may append to the same logs.
    shared: bool = False
    #: True when the logs outlive the process (a journal file, a Redis server).
    persistent: bool = True
    #: What a guard raises for content of this store that is not a valid codebook.
    error: type[ValueError] = StoreError

    @abstractmethod
    def open(self, settings: dict[str, Any]) -> None:
        """Binds the store to a guard's settings (keys SETTING_KEYS).

        Records them if the store is new; raises StoreError if it was created
        with other settings or holds content that is not a valid codebook.
        """

    @abstractmethod
    def fetch(self, since: Sequence[int]) -> list[tuple[int, bytes]]:
        """The centroids appended after the first `since[c]` of each class c, in log order per class.

        `since` (shape (C,)) is what the caller holds: a guard's codebooks are
        always the store's state at some point of its global order, and a
        shared store may rely on that (RedisStore reads only the log entries
        past sum(since)).

        Raises StoreUnavailable when the store cannot be reached. The guard
        validates every payload before using it.
        """

    @abstractmethod
    def append(self, base: Sequence[int], classes: np.ndarray,
               rows: np.ndarray) -> tuple[bool, list[tuple[int, bytes]]]:
        """Atomically appends centroids `rows` ((k, C), the settings' dtype) of `classes` ((k,) int) in
        order, if every class they touch still has `base[c]` centroids.

        `base` holds the caller's count of every class (shape (C,)). Returns
        `(appended, newer)` in one exchange with the store: `appended` is True
        once the store has durably acknowledged the append, False (appending
        nothing) if another guard appended to one of the touched classes
        first; `newer` are the centroids other guards appended beyond `base`
        (as fetch(base) would return them: on success those of the untouched
        classes, on a conflict those of every class), so the caller catches
        up without asking again. Raises StoreUnavailable when the store
        cannot be reached or did not acknowledge in time; the append may then
        have happened or not, and a later fetch tells.
        """

    def check_usable(self) -> None:
        """Raises if this process may not use the store (e.g. a journal opened by the parent of a fork)."""

    @abstractmethod
    def counts(self) -> np.ndarray:
        """Centroids per class in the store, int64 of shape (C,)."""

    @abstractmethod
    def reset(self) -> None:
        """Empties the logs (settings kept); counts() tells whether it happened when it raises."""

    @abstractmethod
    def close(self) -> None:
        """Releases the store's resources; the guard refuses calls afterwards."""

    def describe(self) -> str:
        """A short name for error messages."""
        return type(self).__name__
