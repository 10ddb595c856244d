"""Versioned, checksummed snapshots of array state in an .npz file (never pickled).

Layout: an uncompressed zip (numpy's .npz) of .npy members: one uint8 array
"meta" holding UTF-8 JSON (format name, format version, the caller's
metadata, a SHA-256 over the metadata and every array and, when a key was
given, an HMAC-SHA256 of that digest), and the arrays themselves.

What the checks protect against:

- The SHA-256 is unkeyed: it detects accidental corruption (bit rot, a
  truncated copy, a file of another program), not tampering, since anyone
  who can write the file can recompute it.
- With `key` (bytes, at least 16; e.g. ``os.urandom(32)`` kept out of reach
  of whoever can write the snapshots), `write_snapshot` adds an HMAC-SHA256
  and `read_snapshot` refuses files without a valid one: a file is then only
  accepted if it was written by a holder of the key (it does not stop the
  replay of an older genuine snapshot).

The reader never unpickles, and bounds memory and time by the file's size:
it refuses anything but regular files (a FIFO cannot block it), compressed
members (a deflate bomb is refused before inflating anything), and arrays
whose declared shape and dtype do not match the bytes their member holds.
Every bad file raises SnapshotError; a missing one FileNotFoundError.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

from .atomic import write_atomically

_MAX_MEMBERS = 16
_MAX_NPY_HEADER = 10_000
_NUMERIC_KINDS = "biuf"


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


def _check_key(key: Any) -> bytes | None:
    if key is None:
        return None
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes (e.g. os.urandom(32)), got {type(key).__name__}")
    if len(key) < 16:
        raise ValueError(f"key must hold at least 16 bytes, got {len(key)}")
    return bytes(key)


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, bytes.fromhex(digest), hashlib.sha256).hexdigest()


def write_snapshot(path: str | os.PathLike, fmt: str, version: int, meta: dict[str, Any],
                   arrays: dict[str, np.ndarray], key: bytes | None = None) -> None:
    """Writes the snapshot atomically (locked temporary file, fsync, rename).

    With `key`, an HMAC-SHA256 is added (see the module docstring).
    """
    key = _check_key(key)
    if "meta" in arrays:
        raise ValueError("'meta' is reserved")
    header = {"format": fmt, "format_version": version, **meta}
    header["sha256"] = _digest(header, arrays)
    if key is not None:
        header["hmac_sha256"] = _mac(key, header["sha256"])
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, meta=blob, **arrays))


def _open_regular(path: str | os.PathLike) -> tuple[BinaryIO, int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise SnapshotError(f"{path} cannot be read as a snapshot: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SnapshotError(f"{path} is not a regular file (a directory, FIFO or device), so it is not a snapshot")
    return os.fdopen(fd, "rb"), st.st_size


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> np.ndarray:
    name = info.filename
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=_MAX_NPY_HEADER)
        else:
            raise SnapshotError(f"{path}: member {name} has .npy version {version}, expected 1.0 or 2.0")
        if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
            raise SnapshotError(f"{path}: member {name} holds dtype {dtype}; snapshots hold only numeric arrays "
                                "(Python objects are never unpickled)")
        count = 1
        for n in shape:
            count *= int(n)
        need = count * dtype.itemsize
        have = info.file_size - member.tell()
        if need != have:
            raise SnapshotError(f"{path}: member {name} declares shape {shape} of {dtype} ({need} bytes) but holds "
                                f"{have} bytes")
        data = member.read(need)  # reading to the end checks the member's CRC-32
        if len(data) != need:
            raise SnapshotError(f"{path}: member {name} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    f, size = _open_regular(path)
    with f, zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise SnapshotError(f"{path} holds {len(infos)} members, more than a snapshot has ({_MAX_MEMBERS} at most)")
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise SnapshotError(f"{path} holds two members of the same name")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise SnapshotError(f"{path}: member {info.filename} is compressed; snapshots are written "
                                    "uncompressed, and a compressed member could inflate far beyond the file's size")
            if info.flag_bits & 0x1:
                raise SnapshotError(f"{path}: member {info.filename} is encrypted")
            if not info.filename.endswith(".npy") or info.file_size != info.compress_size or info.file_size > size:
                raise SnapshotError(f"{path}: member {info.filename!r} is not an .npy array stored in this file "
                                    f"(declares {info.file_size} bytes in a file of {size})")
        return {info.filename[: -len(".npy")]: _read_member(zf, info, path) for info in infos}


def read_snapshot(path: str | os.PathLike, fmt: str, max_version: int,
                  key: bytes | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads and verifies a snapshot: (metadata, arrays).

    Raises SnapshotError for anything untrustworthy (see the module
    docstring), with `key` also for a file without a valid HMAC;
    FileNotFoundError for a missing path.
    """
    key = _check_key(key)
    try:
        arrays = _read_arrays(path)
    except (SnapshotError, FileNotFoundError):
        raise
    except zipfile.BadZipFile as err:
        raise SnapshotError(f"{path} is not a readable snapshot: it is not a zip archive (.npz), or a damaged "
                            f"one ({err})") from None
    except (OSError, EOFError, ValueError, struct.error, NotImplementedError, KeyError, IndexError,
            OverflowError, zipfile.LargeZipFile) as err:
        raise SnapshotError(f"{path} is not a readable snapshot: {type(err).__name__}: {err}") from None
    blob = arrays.pop("meta", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise SnapshotError(f"{path} has no metadata record; it is not a modelguard_fast snapshot")
    try:
        header = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SnapshotError(f"{path}: the metadata record is corrupted") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise SnapshotError(f"{path} holds format {header.get('format') if isinstance(header, dict) else None!r}, expected {fmt!r}")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SnapshotError(f"{path}: invalid format_version {version!r}")
    if version > max_version:
        raise SnapshotError(
            f"{path} has format_version {version}, newer than this modelguard_fast reads ({max_version}); upgrade it"
        )
    expected = header.pop("sha256", None)
    mac = header.pop("hmac_sha256", None)
    digest = _digest(header, arrays)
    if not isinstance(expected, str) or not hmac.compare_digest(expected, digest):
        raise SnapshotError(f"{path}: checksum mismatch; the file is corrupted")
    if key is not None:
        if not isinstance(mac, str):
            raise SnapshotError(f"{path} carries no HMAC, but a key was given: refusing an unauthenticated snapshot")
        if not hmac.compare_digest(mac, _mac(key, digest)):
            raise SnapshotError(f"{path}: HMAC mismatch; the file was not written with this key, or was altered")
    return header, arrays
