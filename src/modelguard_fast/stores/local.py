"""The store of one guard in one process: memory only, or an append-only journal file."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..persistence import Journal
from .base import CodebookStore, SETTING_KEYS, StoreError, row_bytes


class LocalStore(CodebookStore):
    """Codebooks of a single guard: in memory, or durable in a journal when `journal` is a path.

    The guard's own codebooks are the data; this store only counts them and,
    with a journal, makes every new centroid durable (fsync) before the answer
    that uses it is returned. The journal file is locked to one process, so a
    LocalStore is never shared: use RedisStore for several processes.

    `ModelGuardS(..., journal=path)` is the short form of
    `ModelGuardS(..., store=LocalStore(journal=path))`.
    """

    shared = False

    def __init__(self, journal: str | os.PathLike | None = None):
        self.path = journal
        self.persistent = journal is not None
        self._journal: Journal | None = None
        self._counts: np.ndarray | None = None
        self._settings: dict[str, Any] | None = None
        self._loaded: list[tuple[int, bytes]] = []

    def describe(self) -> str:
        return f"journal {self.path}" if self.path is not None else "in-memory store"

    def open(self, settings: dict[str, Any]) -> None:
        if self._counts is not None:
            raise StoreError(f"this {self.describe()} is already open for a guard; a LocalStore serves one guard")
        if set(settings) != set(SETTING_KEYS):
            raise ValueError(f"settings must have the keys {SETTING_KEYS}, got {sorted(settings)}")
        counts = np.zeros(int(settings["num_classes"]), dtype=np.int64)
        self._settings = dict(settings)
        if self.path is not None:
            self._journal = Journal(self.path, settings, row_bytes(settings))
            self._loaded, self._journal.records = self._journal.records, []
            for cls, _ in self._loaded:
                if not 0 <= cls < len(counts):
                    raise StoreError(f"{self.describe()} holds a centroid of class {cls}, outside [0, {len(counts)})")
                counts[cls] += 1
        self._counts = counts

    def fetch(self, since: Sequence[int]) -> list[tuple[int, bytes]]:
        since = np.asarray(since, dtype=np.int64)
        if np.array_equal(since, self._counts):
            self._loaded = []  # the guard holds everything: the journal's copy is no longer needed
            return []
        if since.any() or not self._loaded:
            raise StoreError(f"{self.describe()} serves one guard and keeps no rows it did not load; "
                             f"asked for rows after {since.tolist()}")
        return list(self._loaded)

    def append(self, base: Sequence[int], records: list[tuple[int, bytes]]) -> bool:
        classes = np.fromiter((c for c, _ in records), dtype=np.int64, count=len(records))
        if not np.array_equal(np.asarray(base, dtype=np.int64)[classes], self._counts[classes]):
            return False
        if self._journal is not None:
            self._journal.append(records)
        np.add.at(self._counts, classes, 1)
        return True

    def counts(self) -> np.ndarray:
        return self._counts.copy()

    def reset(self) -> None:
        if self._journal is not None:
            self._journal.reset(self._settings)
        self._counts[:] = 0
        self._loaded = []

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
