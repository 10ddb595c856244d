"""An append-only, checksummed, hash-chained journal of fixed-size records (format 2).

File layout (little-endian):

    header:  b"MGFJRNL2" | u32 n | n bytes of UTF-8 JSON | u32 crc32(json)
             JSON = {"journal_id": 32 hex digits, "meta": the caller's metadata, "record_bytes": P}
    record:  u32 0x3252474D ("MGR2") | u64 seq | u32 key | payload (P bytes)
             | 32-byte chain | u32 crc32(everything before it in the record)

Record i carries seq = i and chain = SHA-256 of record i-1 (of the header for
record 0), so every record is bound to its place and to everything before
it: a record deleted, duplicated, reordered or spliced in from another
journal (each journal, and each reset, gets a new random `journal_id`) is
refused with JournalError when the journal is opened.

Rules on opening:

- A missing path is created, complete (header written, fsynced and locked
  before it is linked into place: two creators cannot both succeed).
- A path that exists but is not a journal is refused, never replaced: a
  directory, FIFO, device, a 0-byte file or one shorter than its header
  (creation is atomic, so a journal always holds at least its header).
- A file holding only its header is an empty journal. The file alone cannot
  tell it from a journal that lost records from its end at a record boundary
  (nothing after the last record is ever written); `head` gives the
  (record count, chain hash) to keep elsewhere when that must be checked.
- Torn tail: after a crash the last record may be short, or full length with
  a bad checksum. It is cut off, but never destroyed: the cut bytes are first
  written to ``<journal>.damaged-<UTC time>`` and a warning is logged. A bad
  record followed by more data, or one with a good checksum but the wrong
  sequence number or chain, means the file was damaged: opening refuses it.
- Format 1 journals (b"MGFJRNL1", no sequence numbers or chain) still open:
  their records are read (torn tail rule as above, without writing to the
  old file), written to a new format-2 journal that atomically takes the
  path, and the untouched format-1 file is kept as ``<journal>.format1-<UTC time>``.
- Symbolic links are resolved once, on opening: the journal lives at the
  link's target, and reset() replaces the target, not the link.

Each append is written with one write() and made durable with fsync() before
`append` returns. The file is locked (flock) for as long as it is open: a
second opener, in this or another process, gets JournalError. A forked child
process cannot write to its parent's journal: its copy is closed at fork
(os.register_at_fork) and every write from it raises JournalError.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import os
import stat
import struct
import weakref
import zlib
from pathlib import Path
from typing import Any

from .atomic import create_locked, fsync_dir, replace_locked

log = logging.getLogger(__name__)

MAGIC = b"MGFJRNL2"
MAGIC_V1 = b"MGFJRNL1"
RECORD_MAGIC = 0x3252474D
RECORD_MAGIC_V1 = 0x5243474D
_U32 = struct.Struct("<I")
_RECORD_HEAD = struct.Struct("<IQI")  # magic, seq, key
_RECORD_HEAD_V1 = struct.Struct("<II")
_CHAIN = 32

_OPEN: "weakref.WeakSet[Journal]" = weakref.WeakSet()


class JournalError(ValueError):
    """A journal that cannot be trusted (corrupted, or written for other settings) or cannot be opened."""


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _normalized(meta: dict[str, Any]) -> Any:
    return json.loads(json.dumps(meta, sort_keys=True))


def _header_bytes(meta: dict[str, Any], record_bytes: int) -> bytes:
    body = {"journal_id": os.urandom(16).hex(), "meta": meta, "record_bytes": record_bytes}
    text = json.dumps(body, sort_keys=True).encode()
    return MAGIC + _U32.pack(len(text)) + text + _U32.pack(zlib.crc32(text))


def _parse_header(data: bytes, path: Path) -> tuple[int, Any, int]:
    """(format, decoded JSON, header length)."""
    if len(data) == 0:
        raise JournalError(f"{path} is empty (0 bytes), so it is not a journal: journals are created complete, "
                           "with their header, so this file was never one or was truncated; refusing to start "
                           "a new journal over it (remove it to start one)")
    magic = data[: len(MAGIC)]
    if magic not in (MAGIC, MAGIC_V1):
        raise JournalError(f"{path} is not a modelguard_fast journal (bad magic)")
    start = len(MAGIC) + 4
    if len(data) < start:
        raise JournalError(f"{path}: the journal header is truncated")
    (n,) = _U32.unpack_from(data, len(MAGIC))
    end = start + n
    if end + 4 > len(data):
        raise JournalError(f"{path}: the journal header is truncated")
    text = data[start:end]
    (crc,) = _U32.unpack_from(data, end)
    if crc != zlib.crc32(text):
        raise JournalError(f"{path}: the journal header is corrupted (checksum mismatch)")
    try:
        decoded = json.loads(text.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JournalError(f"{path}: the journal header is corrupted (not JSON)") from None
    return (2 if magic == MAGIC else 1), decoded, end + 4


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


class Journal:
    """Records of `record_bytes` payload bytes, each tagged with an integer key (u32).

    Args:
        path: the journal file (see the module docstring for what is refused).
        meta: JSON-serialisable settings; an existing journal must carry the same.
        record_bytes: payload size of every record.
        legacy_meta: the settings a format-1 journal must carry, when they
            differ from `meta` (keys added since); default `meta`.

    Attributes:
        records: the records found on opening, as (key, payload) pairs in order.
        path: the resolved path of the file.

    Raises:
        JournalError: for every file that is not a trustworthy journal of
            these settings, and when the journal is open elsewhere.
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], record_bytes: int, *,
                 legacy_meta: dict[str, Any] | None = None):
        self._setup(path, record_bytes)
        fd, created = self._open_locked(meta)
        self._fd = fd
        try:
            data = self._read_all()
            if created:
                self._adopt(data, [])
            else:
                self._load(data, meta, legacy_meta if legacy_meta is not None else meta)
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, path: str | os.PathLike, meta: dict[str, Any], record_bytes: int,
               items: list[tuple[int, bytes]]) -> "Journal":
        """A new journal holding `items`, appearing at `path` complete or not at all.

        Raises JournalError when `path` exists (whatever it holds).
        """
        journal = cls.__new__(cls)
        journal._setup(path, record_bytes)
        header = _header_bytes(meta, journal.record_bytes)
        blob, _ = journal._encode(items, 0, hashlib.sha256(header).digest())
        try:
            journal._fd = create_locked(journal.path, header + blob)
        except FileExistsError:
            raise JournalError(f"{journal.path} already exists; a new journal needs a path that does not") from None
        except OSError as err:
            raise JournalError(f"cannot create journal {journal.path}: {err}") from err
        journal._adopt(header + blob, [])
        return journal

    # ------------------------------------------------------------ opening
    def _setup(self, path: str | os.PathLike, record_bytes: int) -> None:
        self.path = Path(os.path.realpath(os.fspath(path)))
        self.record_bytes = int(record_bytes)
        self._record_size = _RECORD_HEAD.size + self.record_bytes + _CHAIN + 4
        self.records: list[tuple[int, bytes]] = []
        self._fd = -1
        self._pid = os.getpid()
        self._forked = False
        self._seq = 0
        self._chain = b""
        self._length = 0

    def _open_locked(self, meta: dict[str, Any]) -> tuple[int, bool]:
        """An fd on the file at self.path holding its exclusive flock, and whether it was just created."""
        while True:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                try:
                    return create_locked(self.path, _header_bytes(meta, self.record_bytes)), True
                except FileExistsError:
                    continue  # created by someone else meanwhile: open theirs
                except OSError as err:
                    raise JournalError(f"cannot create journal {self.path}: {err}") from err
            except OSError as err:
                raise JournalError(f"cannot open journal {self.path}: {err}") from err
            if not stat.S_ISREG(st.st_mode):
                raise JournalError(f"journal path {self.path} is {_kind(st.st_mode)}, not a journal file")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise JournalError(f"cannot open journal {self.path}: {err}") from err
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    raise JournalError(f"journal path {self.path} is {_kind(mode)}, not a journal file")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise JournalError(f"{self.path} is already open in another process or guard") from None
                # The file may have been replaced (reset) or removed between open and flock.
                if os.fstat(fd).st_nlink > 0 and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd, False
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0)

    def _adopt(self, data: bytes, records: list[tuple[int, bytes]]) -> None:
        """Takes the (already checked) content of the file open on self._fd as the current state."""
        _, _, offset = _parse_header(data, self.path)
        chain = hashlib.sha256(data[:offset]).digest()
        count = (len(data) - offset) // self._record_size
        if count:
            last = offset + (count - 1) * self._record_size
            chain = hashlib.sha256(data[last : last + self._record_size]).digest()
        self._seq = count
        self._chain = chain
        self._length = offset + count * self._record_size
        self.records = records
        _OPEN.add(self)

    def _load(self, data: bytes, meta: dict[str, Any], legacy_meta: dict[str, Any]) -> None:
        version, header, offset = _parse_header(data, self.path)
        if version == 1:
            self._convert_v1(data, header, offset, meta, legacy_meta)
            return
        if not isinstance(header, dict) or {"journal_id", "meta", "record_bytes"} - set(header):
            raise JournalError(f"{self.path}: the journal header lacks journal_id, meta or record_bytes")
        if header["meta"] != _normalized(meta):
            raise JournalError(f"{self.path} was written with settings {header['meta']}, but it was opened with {meta}")
        if header["record_bytes"] != self.record_bytes:
            raise JournalError(f"{self.path} holds records of {header['record_bytes']} bytes, "
                               f"expected {self.record_bytes}")
        records, end = self._parse_records(data, offset)
        if end != len(data):
            self._cut(data, end)
        self._adopt(data[:end], records)

    def _parse_records(self, data: bytes, offset: int) -> tuple[list[tuple[int, bytes]], int]:
        """The records of a format-2 body and where the intact part ends (a torn last record excluded)."""
        size = self._record_size
        body = len(data) - offset
        complete = body // size
        chain = hashlib.sha256(data[:offset]).digest()
        records = []
        for i in range(complete):
            pos = offset + i * size
            record = data[pos : pos + size]
            magic, seq, key = _RECORD_HEAD.unpack_from(record)
            (crc,) = _U32.unpack_from(record, size - 4)
            if magic != RECORD_MAGIC or crc != zlib.crc32(record[:-4]):
                if i == complete - 1 and body % size == 0:
                    return records, pos  # a torn final record that happens to have full length
                raise JournalError(f"{self.path}: record {i} is corrupted (bad checksum) and is followed by more "
                                   "data; refusing to load a damaged journal")
            if seq != i:
                raise JournalError(f"{self.path}: record {i} carries sequence number {seq}; records were deleted, "
                                   "duplicated or reordered: refusing to load a damaged journal")
            if record[size - 4 - _CHAIN : size - 4] != chain:
                raise JournalError(f"{self.path}: record {i} does not chain to the records before it (records "
                                   "replaced, reordered or copied from another journal): refusing to load it")
            records.append((key, record[_RECORD_HEAD.size : _RECORD_HEAD.size + self.record_bytes]))
            chain = hashlib.sha256(record).digest()
        return records, offset + complete * size

    def _convert_v1(self, data: bytes, header: Any, offset: int, meta: dict[str, Any],
                    legacy_meta: dict[str, Any]) -> None:
        if header != _normalized(legacy_meta):
            raise JournalError(f"{self.path} was written with settings {header}, but it was opened with {legacy_meta}")
        size = _RECORD_HEAD_V1.size + self.record_bytes + 4
        body = len(data) - offset
        complete = body // size
        records = []
        for i in range(complete):
            pos = offset + i * size
            magic, key = _RECORD_HEAD_V1.unpack_from(data, pos)
            payload = data[pos + _RECORD_HEAD_V1.size : pos + size - 4]
            (crc,) = _U32.unpack_from(data, pos + size - 4)
            if magic == RECORD_MAGIC_V1 and crc == zlib.crc32(data[pos + 4 : pos + 8] + payload):
                records.append((key, payload))
                continue
            if i == complete - 1 and body % size == 0:
                break
            raise JournalError(f"{self.path}: format-1 record {i} is corrupted (bad checksum) and is followed by "
                               "more data; refusing to load a damaged journal")
        backup = Path(f"{self.path}.format1-{_utc_stamp()}")
        header2 = _header_bytes(meta, self.record_bytes)
        blob, _ = self._encode(records, 0, hashlib.sha256(header2).digest())
        try:
            os.link(self.path, backup)
            fd = replace_locked(self.path, header2 + blob)
        except OSError as err:
            raise JournalError(f"cannot convert format-1 journal {self.path} to format 2: {err}") from err
        os.close(self._fd)
        self._fd = fd
        fsync_dir(self.path.parent)
        self._adopt(header2 + blob, records)
        log.warning("converted format-1 journal %s to format 2 (%d records); the format-1 file is kept as %s",
                    self.path, len(records), backup)

    def _cut(self, data: bytes, end: int) -> None:
        """Moves the torn tail data[end:] aside to <journal>.damaged-<time>, then truncates the journal there."""
        aside = Path(f"{self.path}.damaged-{_utc_stamp()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)[end:]
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        os.ftruncate(self._fd, end)
        os.fsync(self._fd)
        log.warning("journal %s ended with %d bytes that are not a complete record (a write torn by a crash, or "
                    "damage to its last record); they were cut off and kept in %s", self.path, len(data) - end, aside)

    # ------------------------------------------------------------ writing
    def _encode(self, items: list[tuple[int, bytes]], seq: int, chain: bytes) -> tuple[bytes, bytes]:
        chunks = []
        for key, payload in items:
            if len(payload) != self.record_bytes:
                raise ValueError(f"journal payload must be {self.record_bytes} bytes, got {len(payload)}")
            record = _RECORD_HEAD.pack(RECORD_MAGIC, seq, key) + payload + chain
            record += _U32.pack(zlib.crc32(record))
            chunks.append(record)
            chain = hashlib.sha256(record).digest()
            seq += 1
        return b"".join(chunks), chain

    def _check_writable(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise JournalError(f"{self.path} was opened by process {self._pid}; this forked process ({os.getpid()}) "
                               "cannot write to it: open a guard on its own journal in the child")
        if self._fd < 0:
            raise JournalError(f"{self.path}: the journal is closed")

    @property
    def head(self) -> tuple[int, str]:
        """(number of records, hex SHA-256 chain hash of the last one): keep it elsewhere to detect a cut end."""
        return self._seq, self._chain.hex()

    def append(self, items: list[tuple[int, bytes]]) -> None:
        """Appends records durably; on failure the file is cut back to its previous length."""
        self._check_writable()
        if not items:
            return
        blob, chain = self._encode(items, self._seq, self._chain)
        try:
            written = os.pwrite(self._fd, blob, self._length)
            if written != len(blob):
                raise OSError(f"short write to {self.path}: {written} of {len(blob)} bytes")
            os.fsync(self._fd)
        except BaseException:
            os.ftruncate(self._fd, self._length)
            raise
        self._length += len(blob)
        self._seq += len(items)
        self._chain = chain

    def reset(self, meta: dict[str, Any]) -> None:
        """Atomically replaces the journal with an empty one carrying `meta`.

        The new file is locked before it takes the path, so no other opener
        can slip in. Raises JournalError, leaving the old journal intact and
        open, when the new one cannot be written.
        """
        self._check_writable()
        header = _header_bytes(meta, self.record_bytes)
        try:
            fd = replace_locked(self.path, header)
        except OSError as err:
            raise JournalError(f"cannot reset journal {self.path}; the old journal is intact: {err}") from err
        os.close(self._fd)
        self._fd = fd
        self._adopt(header, [])
        try:
            fsync_dir(self.path.parent)
        except OSError as err:
            raise JournalError(f"journal {self.path} was reset, but its folder could not be synced: {err}") from err

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _OPEN.discard(self)

    def _after_fork_in_child(self) -> None:
        # The child's descriptor shares the parent's open file and its flock:
        # closing it leaves the parent's lock in place.
        self._forked = True
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _after_fork_in_child() -> None:
    for journal in list(_OPEN):
        journal._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
