"""An append-only, checksummed journal of fixed-size records.

File layout (little-endian):

    header:  b"MGFJRNL1" | u32 n | n bytes of UTF-8 JSON metadata | u32 crc32(json)
    record:  u32 0x5243474D ("MGCR") | u32 key | payload (record_bytes) | u32 crc32(key + payload)

Each append is written with one write() and made durable with fsync() before
`append` returns. After a crash the last record may be torn (short, or full
length with a bad checksum): it is discarded and cut off on open. A bad record
followed by good data means the file was damaged: opening refuses it.
The file is locked (flock) so that two processes cannot append to one journal.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from .atomic import fsync_dir, write_atomically

MAGIC = b"MGFJRNL1"
RECORD_MAGIC = 0x5243474D
_U32 = struct.Struct("<I")
_RECORD_HEAD = struct.Struct("<II")


class JournalError(ValueError):
    """A journal that cannot be trusted (corrupted, or written for other settings) or cannot be opened."""


def _header_bytes(meta: dict[str, Any]) -> bytes:
    text = json.dumps(meta, sort_keys=True).encode()
    return MAGIC + _U32.pack(len(text)) + text + _U32.pack(zlib.crc32(text))


def _parse_header(data: bytes, path: Path) -> tuple[dict[str, Any], int]:
    if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise JournalError(f"{path} is not a modelguard_fast journal (bad magic)")
    (n,) = _U32.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + 4
    end = start + n
    if end + 4 > len(data):
        raise JournalError(f"{path}: the journal header is truncated")
    text = data[start:end]
    (crc,) = _U32.unpack_from(data, end)
    if crc != zlib.crc32(text):
        raise JournalError(f"{path}: the journal header is corrupted (checksum mismatch)")
    return json.loads(text.decode()), end + 4


class Journal:
    """Records of `record_bytes` payload bytes, each tagged with an integer key."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], record_bytes: int):
        """Opens `path`, creating it with `meta` if it is missing or empty.

        An existing journal must carry the same `meta`; its intact records are
        available in `self.records` as (key, payload) pairs, in append order.
        """
        self.path = Path(path)
        self.record_bytes = int(record_bytes)
        self._record_size = _RECORD_HEAD.size + self.record_bytes + 4
        self.records: list[tuple[int, bytes]] = []
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_atomically(self.path, lambda f: f.write(_header_bytes(meta)))
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(f"{self.path} is already open in another process or guard") from None
            self._load(meta)
        except BaseException:
            os.close(self._fd)
            raise

    def _load(self, meta: dict[str, Any]) -> None:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0)
        found, offset = _parse_header(data, self.path)
        if found != json.loads(json.dumps(meta, sort_keys=True)):
            raise JournalError(f"{self.path} was written with settings {found}, but it was opened with {meta}")
        body = len(data) - offset
        complete = body // self._record_size
        for i in range(complete):
            pos = offset + i * self._record_size
            magic, key = _RECORD_HEAD.unpack_from(data, pos)
            payload = data[pos + _RECORD_HEAD.size : pos + _RECORD_HEAD.size + self.record_bytes]
            (crc,) = _U32.unpack_from(data, pos + self._record_size - 4)
            if magic == RECORD_MAGIC and crc == zlib.crc32(data[pos + 4 : pos + 8] + payload):
                self.records.append((key, payload))
                continue
            if i == complete - 1 and body % self._record_size == 0:
                break  # a torn final record that happens to have full length
            raise JournalError(
                f"{self.path}: record {i} is corrupted (bad checksum) and is followed by more data; "
                "refusing to load a damaged journal"
            )
        self._length = offset + len(self.records) * self._record_size
        if self._length != size:
            os.ftruncate(self._fd, self._length)
            os.fsync(self._fd)

    def append(self, items: list[tuple[int, bytes]]) -> None:
        """Appends records durably; on failure the file is cut back to its previous length."""
        if not items:
            return
        chunks = []
        for key, payload in items:
            if len(payload) != self.record_bytes:
                raise ValueError(f"journal payload must be {self.record_bytes} bytes, got {len(payload)}")
            keyed = _U32.pack(key) + payload
            chunks.append(_U32.pack(RECORD_MAGIC) + keyed + _U32.pack(zlib.crc32(keyed)))
        blob = b"".join(chunks)
        try:
            written = os.pwrite(self._fd, blob, self._length)
            if written != len(blob):
                raise OSError(f"short write to {self.path}: {written} of {len(blob)} bytes")
            os.fsync(self._fd)
        except BaseException:
            os.ftruncate(self._fd, self._length)
            raise
        self._length += len(blob)

    def reset(self, meta: dict[str, Any]) -> None:
        """Atomically replaces the journal with an empty one carrying `meta`."""
        write_atomically(self.path, lambda f: f.write(_header_bytes(meta)))
        fd = os.open(self.path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(self._fd)
        self._fd = fd
        self._length = os.fstat(fd).st_size
        self.records = []
        fsync_dir(self.path.parent)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
