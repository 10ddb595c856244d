"""Versioned, checksummed snapshots of array state in an .npz file (never pickled).

Layout: one uint8 array "meta" holding UTF-8 JSON (format name, format
version, the caller's metadata and a SHA-256 over the metadata and every
array), and the arrays themselves. Loading uses allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any

import numpy as np

from .atomic import write_atomically


class SnapshotError(ValueError):
    """A snapshot that cannot be trusted: missing, corrupted, or of another format or version."""


def _digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_snapshot(path: str | os.PathLike, fmt: str, version: int, meta: dict[str, Any],
                   arrays: dict[str, np.ndarray]) -> None:
    """Writes the snapshot atomically (temporary file, fsync, rename)."""
    if "meta" in arrays:
        raise ValueError("'meta' is reserved")
    header = {"format": fmt, "format_version": version, **meta}
    header["sha256"] = _digest(header, arrays)
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, meta=blob, **arrays))


def read_snapshot(path: str | os.PathLike, fmt: str, max_version: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads and verifies a snapshot; raises SnapshotError for anything untrustworthy."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise SnapshotError(f"{path} is not a readable snapshot: {err}") from None
    blob = arrays.pop("meta", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise SnapshotError(f"{path} has no metadata record; it is not a modelguard_fast snapshot")
    try:
        header = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnapshotError(f"{path}: the metadata record is corrupted") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise SnapshotError(f"{path} holds format {header.get('format') if isinstance(header, dict) else None!r}, expected {fmt!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise SnapshotError(f"{path}: invalid format_version {version!r}")
    if version > max_version:
        raise SnapshotError(
            f"{path} has format_version {version}, newer than this modelguard_fast reads ({max_version}); upgrade it"
        )
    expected = header.pop("sha256", None)
    if expected != _digest(header, arrays):
        raise SnapshotError(f"{path}: checksum mismatch; the file is corrupted")
    return header, arrays
