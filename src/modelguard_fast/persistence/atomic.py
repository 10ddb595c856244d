"""Crash-safe file replacement: write a temporary file, fsync it, rename it, fsync the folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, BinaryIO


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls write(file) on a temporary file beside `path`, then moves it into place.

    Either the old file or the complete new one is at `path` after a crash at
    any point; a failure leaves the old file untouched and no temporary behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)
