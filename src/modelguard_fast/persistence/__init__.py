"""Durable, non-pickle storage of defense state: atomic snapshots and an append-only journal."""

from .journal import Journal, JournalError
from .snapshot import SnapshotError, read_snapshot, write_snapshot

__all__ = ["Journal", "JournalError", "SnapshotError", "read_snapshot", "write_snapshot"]
