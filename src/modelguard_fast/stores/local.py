"""The store of one guard in one process: memory only, or an append-only journal file."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..persistence import Journal, JournalError
from .base import CodebookStore, SETTING_KEYS, StoreError, records_of, row_bytes


class LocalStore(CodebookStore):
    """Codebooks of a single guard: in memory, or durable in a journal when `journal` is a path.

    The guard's own codebooks are the data; this store counts them and, with
    a journal (modelguard_fast.persistence.Journal: checksummed, hash-chained,
    locked to one process), makes every new centroid durable (fsync) before
    the answer that uses it is returned, restores them on opening, and
    replaces the file atomically on reset(). A LocalStore is never shared:
    use RedisStore for several processes.

    `ModelGuardS(..., journal=path)` is the short form of
    `ModelGuardS(..., store=LocalStore(journal=path))`. Content that is not a
    valid codebook of the guard's settings raises JournalError.
    """

    shared = False

    def __init__(self, journal: str | os.PathLike | None = None):
        if journal is not None and not isinstance(journal, (str, os.PathLike)):
            raise TypeError(f"journal must be a path (str or os.PathLike) or None, got {type(journal).__name__}")
        self.path = journal
        self.persistent = journal is not None
        self.error = JournalError if journal is not None else StoreError
        #: The open Journal (None in memory, and before open()).
        self.journal: Journal | None = None
        self._counts: np.ndarray | None = None
        self._settings: dict[str, Any] | None = None
        self._loaded: list[tuple[int, bytes]] = []

    @classmethod
    def create(cls, journal: str | os.PathLike, settings: dict[str, Any],
               records: list[tuple[int, bytes]]) -> "LocalStore":
        """An open store on a new journal holding `records`, which appears complete or not at all.

        Raises JournalError when `journal` exists (whatever it holds).
        """
        store = cls(journal)
        store._bind(settings)
        store._count(records)
        store.journal = Journal.create(journal, store._settings, row_bytes(settings), records)
        return store

    def describe(self) -> str:
        if self.path is None:
            return "in-memory store"
        return f"journal {self.journal.path if self.journal is not None else self.path}"

    def _bind(self, settings: dict[str, Any]) -> None:
        if self._counts is not None:
            raise StoreError(f"this {self.describe()} is already open for a guard; a LocalStore serves one guard")
        if set(settings) != set(SETTING_KEYS):
            raise ValueError(f"settings must have the keys {SETTING_KEYS}, got {sorted(settings)}")
        self._settings = dict(settings)
        self._counts = np.zeros(int(settings["num_classes"]), dtype=np.int64)

    def _count(self, records: list[tuple[int, bytes]]) -> None:
        classes = np.fromiter((c for c, _ in records), dtype=np.int64, count=len(records))
        C = len(self._counts)
        if classes.size and not 0 <= int(classes.min()) <= int(classes.max()) < C:
            bad = int(classes.max()) if classes.max() >= C else int(classes.min())
            raise self.error(f"{self.describe()} holds a record of class {bad}, but the guard has {C} classes")
        self._counts += np.bincount(classes, minlength=C)

    def open(self, settings: dict[str, Any]) -> None:
        self._bind(settings)
        if self.path is None:
            return
        # Journals of format 1 recorded the settings without sum_tol.
        legacy = {k: v for k, v in self._settings.items() if k != "sum_tol"}
        self.journal = Journal(self.path, self._settings, row_bytes(settings), legacy_meta=legacy)
        self._loaded, self.journal.records = self.journal.records, []
        try:
            self._count(self._loaded)
        except BaseException:
            self.close()
            raise

    def fetch(self, since: Sequence[int]) -> list[tuple[int, bytes]]:
        since = np.asarray(since, dtype=np.int64)
        if np.array_equal(since, self._counts):
            self._loaded = []  # the guard holds everything: the journal's copy is no longer needed
            return []
        if since.any() or not self._loaded:
            raise StoreError(f"{self.describe()} serves one guard and keeps no rows it did not load; "
                             f"asked for rows after {since.tolist()}")
        return list(self._loaded)

    def append(self, base: Sequence[int], classes: np.ndarray,
               rows: np.ndarray) -> tuple[bool, list[tuple[int, bytes]]]:
        classes = np.asarray(classes, dtype=np.int64)
        if not np.array_equal(np.asarray(base, dtype=np.int64)[classes], self._counts[classes]):
            return False, []
        if self.journal is not None:
            self.journal.append(records_of(classes, rows, self._settings["dtype"]))
        self._counts += np.bincount(classes, minlength=len(self._counts))
        return True, []

    def check_usable(self) -> None:
        journal = self.journal
        if journal is not None and (journal._forked or journal._pid != os.getpid()):
            raise JournalError(f"this guard's journal {journal.path} belongs to process {journal._pid}; a forked "
                               f"child ({os.getpid()}) cannot use it: open a new guard on another journal")

    def counts(self) -> np.ndarray:
        return self._counts.copy()

    def reset(self) -> None:
        """Empties the store; a journal is replaced atomically (JournalError, old one intact, if it cannot be)."""
        if self.journal is None:
            self._counts[:] = 0
            return
        try:
            self.journal.reset(self._settings)
        finally:
            if self.journal.head[0] == 0:  # replaced, even if syncing its folder failed
                self._counts[:] = 0
                self._loaded = []

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
