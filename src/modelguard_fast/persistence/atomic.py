"""Crash-safe file creation and replacement: a locked temporary file, fsync, then link or rename.

Every temporary file is created beside its target as ``.<name>.<random>.tmp``
and holds an exclusive flock for as long as its writer lives, so a temporary
left by a killed writer (its lock died with it) is told apart from one being
written right now: the next writer of the same target removes the former.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Removes the temporaries of `path` whose writer is gone (no lock held on them); returns their names."""
    path = Path(path)
    removed = []
    pattern = os.path.join(glob.escape(str(folder_of(path))), glob.escape(_prefix(path)) + "*.tmp")
    for name in glob.glob(pattern):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            try:
                if os.stat(name, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    os.unlink(name)
                    removed.append(name)
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write of %s", len(removed), path)
    return removed


def locked_temporary(path: str | os.PathLike) -> tuple[int, str]:
    """A new temporary file beside `path`, open read-write with an exclusive flock: (fd, name).

    Stale temporaries of the same target are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    while True:
        fd, name = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=folder_of(path))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another writer's clean-up may have removed the file between mkstemp and flock.
            if os.stat(name, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd, name
        except (BlockingIOError, FileNotFoundError):
            pass
        except BaseException:
            os.close(fd)
            _unlink_quietly(name)
            raise
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls write(file) on a temporary file beside `path`, then moves it into place.

    Either the old file or the complete new one is at `path` after a crash at
    any point; a failure leaves the old file untouched and no temporary
    behind, and a temporary left by a killed writer is removed by the next
    write of the same path.
    """
    path = Path(path)
    fd, tmp = locked_temporary(path)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        os.close(fd)
    fsync_dir(folder_of(path))


def create_locked(path: str | os.PathLike, data: bytes) -> int:
    """Creates `path` holding `data`, complete or not at all; returns an fd holding its exclusive flock.

    Raises FileExistsError when `path` exists (the file is linked into place,
    which never replaces anything: two creators cannot both succeed).
    """
    path = Path(path)
    fd, tmp = _placed_locked(path, data, os.link)
    _unlink_quietly(tmp)
    fsync_dir(folder_of(path))
    return fd


def replace_locked(path: str | os.PathLike, data: bytes) -> int:
    """Replaces `path` by a file holding `data`, locked before it becomes visible; returns its fd.

    A failure before the rename leaves the old file in place and no temporary
    behind; the returned fd holds the new file's exclusive flock. The caller
    makes the rename durable with fsync_dir once it has adopted the fd.
    """
    fd, _ = _placed_locked(Path(path), data, os.replace)
    return fd


def _placed_locked(path: Path, data: bytes, place: Callable[[str, Path], None]) -> tuple[int, str]:
    """Writes `data` to a locked temporary beside `path`, fsyncs it, and puts it in place with
    `place(tmp, path)` (os.link: create; os.replace: replace). Returns (fd holding the flock, tmp).

    On any failure the fd is closed and the temporary removed; nothing else changed.
    """
    fd, tmp = locked_temporary(path)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        place(tmp, path)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    return fd, tmp
