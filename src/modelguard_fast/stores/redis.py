"""One ModelGuard-S codebook shared by every replica of a model, in Redis.

Keys (all under the prefix ``mgf:{<name>}:``; the ``{<name>}`` hash tag keeps a
name's keys in one Redis Cluster slot, so each script may touch them all):

    mgf:{name}:settings   hash: format, format_version, num_classes, eps, order, dtype, sum_tol
    mgf:{name}:class:<c>  list: the centroids of class c in append order, each
                          num_classes raw little-endian values of dtype
    mgf:{name}:log        list: the class of every centroid, in the one global
                          order of all appends (format_version 2)

Every step that reads or writes more than one key is a Lua script (atomic on
the server): `open` records or returns the settings, and one script serves
both `fetch` and `append`: it appends only if every touched class still has
the length the caller saw (the compare-and-append) and returns, in the same
reply, what other guards appended since the caller's position in the log, so
a batch that creates centroids costs one round trip, a conflict included. A
guard's codebooks are always the log's first entries (it adopts every reply),
so the server reads only the log's new entries and the classes they name:
an exchange costs what changed since, not the number of classes (format 1
compared every class's length on every exchange: 100 calls at C = 100).
Values are raw bytes the guard decodes and validates; nothing is ever
unpickled.

Durability: an append counts as acknowledged when the script returned (and,
with `wait_replicas=N`, when `WAIT N` confirmed N replicas). It survives a
crash of the server only with AOF on and `appendfsync always` (or with the
replicas of `wait_replicas`); see the README, "Shared codebooks (Redis)".
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np

from .base import (
    STORE_FORMAT_VERSION,
    CodebookStore,
    SETTING_KEYS,
    StoreError,
    StoreUnavailable,
    check_settings,
    records_of,
)

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError('RedisStore needs redis-py: pip install "modelguard_fast[redis]"') from err

log = logging.getLogger(__name__)

# Replies of a server that is up but cannot serve now (a long script of any client: BUSY; a
# failover under way: a primary turned replica, a cluster without its primary): StoreUnavailable,
# not untrustworthy content. redis-py has no class for BUSY.
_TRANSIENT = (redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)

FORMAT = "modelguard_fast.codebooks"
_NAME = re.compile(r"[A-Za-z0-9_.:/@+=-]{1,200}")
_CLASS = re.compile(r"0|[1-9][0-9]{0,17}")  # a log entry: a class number as the sync script writes it

_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local held = 0
  for i = 3, #KEYS do
    held = held + redis.call('LLEN', KEYS[i])
  end
  return {0, redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]), held}
end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return {-1, KEYS[i], 0, 0}
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {1, {}, 0, 0}
"""

# The compare-and-append and the fetch in one script. KEYS[1]: the settings
# key; the log and the class lists are derived from it (the {name} hash tag
# puts them all in its Redis Cluster slot). ARGV[1]: the caller's position in
# the log (how many centroids its codebooks hold: they are the log's first
# ARGV[1] entries); then (class, the caller's count of that class, payload)
# triples in append order (none for a plain fetch). Appends only if every
# touched class still has the caller's count, and then logs the classes in
# order. Returns -1 without a settings record; {-2, log length} when the log
# is shorter than the caller's position (acknowledged appends were lost);
# else {appended (1/0), log length before the append, {} or on a conflict {the first
# touched class whose length differs, that length}, then {class, its length, its
# entries in the log past the position, its last rows (that many)} for each class the log names past the
# caller's position, in order of first appearance}. Its cost is that of what
# changed since the caller's position, not of the number of classes.
_SYNC = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #'settings')
local log = prefix .. 'log'
local position = tonumber(ARGV[1])
local total = redis.call('LLEN', log)
if total < position then
  return {-2, total}
end
local ok = 1
local conflict = {}
local checked = {}
for j = 2, #ARGV, 3 do
  local c = ARGV[j]
  if not checked[c] then
    checked[c] = true
    local n = redis.call('LLEN', prefix .. 'class:' .. c)
    if n ~= tonumber(ARGV[j + 1]) then
      ok = 0
      conflict = {c, n}
      break
    end
  end
end
local out = {ok, total, conflict}
if total > position then
  local count, first = {}, {}
  for _, c in ipairs(redis.call('LRANGE', log, position, -1)) do
    if count[c] == nil then
      count[c] = 0
      first[#first + 1] = c
    end
    count[c] = count[c] + 1
  end
  for _, c in ipairs(first) do
    local key = prefix .. 'class:' .. c
    local n = redis.call('LLEN', key)
    out[#out + 1] = {c, n, count[c], n >= count[c] and redis.call('LRANGE', key, n - count[c], -1) or {}}
  end
end
if ok == 1 and #ARGV > 1 then
  local classes = {}
  for j = 2, #ARGV, 3 do
    redis.call('RPUSH', prefix .. 'class:' .. ARGV[j], ARGV[j + 2])
    classes[#classes + 1] = ARGV[j]
    if #classes == 1000 then
      redis.call('RPUSH', log, unpack(classes))
      classes = {}
    end
  end
  if #classes > 0 then
    redis.call('RPUSH', log, unpack(classes))
  end
end
return out
"""


def _text(value) -> str:
    """A reply's bytes as text; bytes that are not UTF-8 (foreign content) appear escaped, never raise."""
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


class RedisStore(CodebookStore):
    """A codebook store in Redis, shared by every guard opened with the same `name`.

    Args:
        url: a redis-py URL: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS,
            ``unix:///path/redis.sock``.
        name: the protected model's codebook name (letters, digits and ``_.:/@+=-``, at most 200);
            one name per model and settings.
        socket_timeout: seconds to wait for a reply before the call fails (StoreUnavailable).
        connect_timeout: seconds to wait for a connection.
        retries: retries of a command after a connection error or timeout (exponential back-off,
            capped at 0.5 s), before StoreUnavailable.
        wait_replicas: if > 0, every append waits (``WAIT``) until that many replicas have it;
            fewer within `wait_timeout` seconds raises StoreUnavailable and nothing is answered.
        **client_options: passed to ``redis.Redis.from_url`` (e.g. ``ssl_ca_certs``).

    Errors: StoreUnavailable when the server cannot be reached, does not acknowledge, or cannot
    serve now (BUSY with another client's long script; READONLY or CLUSTERDOWN during a failover);
    StoreError for settings that differ from the guard's or content that is not a valid
    codebook (foreign keys or types under the name, lost data, malformed rows).
    """

    shared = True
    persistent = True
    format_version = STORE_FORMAT_VERSION

    def __init__(self, url: str, name: str, *, socket_timeout: float = 2.0, connect_timeout: float = 2.0,
                 retries: int = 2, wait_replicas: int = 0, wait_timeout: float = 1.0, **client_options: Any):
        if not isinstance(url, str):
            raise TypeError(f"url must be a redis:// URL string, got {type(url).__name__}")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"name must be 1 to 200 of the characters A-Z a-z 0-9 _ . : / @ + = -, got {name!r}")
        for key, value in (("socket_timeout", socket_timeout), ("connect_timeout", connect_timeout),
                           ("wait_timeout", wait_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600:
                raise ValueError(f"{key} must be a number of seconds in (0, 3600), got {value!r}")
        for key, value in (("retries", retries), ("wait_replicas", wait_replicas)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        if client_options.get("decode_responses"):
            raise ValueError("decode_responses must stay False: centroids are raw bytes")
        self.name = name
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError], **client_options)
        prefix = f"mgf:{{{name}}}:"
        self._prefix = prefix
        self._settings_key = prefix + "settings"
        self._log_key = prefix + "log"
        self._open_script = self._client.register_script(_OPEN)
        self._sync_script = self._client.register_script(_SYNC)
        self._settings: dict[str, Any] | None = None
        self._class_keys: list[str] = []

    def describe(self) -> str:
        return f"Redis store {self.name!r} at {self._where}"

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, name={self.name!r})"

    # --------------------------------------------------------------- plumbing
    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
            raise StoreUnavailable(f"{self.describe()} is unreachable: {err}") from None
        except redis.exceptions.NoPermissionError as err:
            raise StoreError(f"{self.describe()}: the Redis user may not do this ({err}); see the README's "
                             "ACL for a replica") from None
        except redis.exceptions.ResponseError as err:
            if isinstance(err, _TRANSIENT) or str(err).startswith("BUSY "):
                raise StoreUnavailable(f"{self.describe()} cannot serve now: {err}") from None
            raise StoreError(f"{self.describe()} refused a codebook operation: {err} "
                             "(keys under the name that are not a modelguard_fast codebook?)") from None

    def _require_open(self) -> None:
        if self._settings is None:
            raise StoreError(f"{self.describe()} is not open: open it with a guard's settings first")

    def _class_key(self, cls: int) -> str:
        return f"{self._prefix}class:{cls}"

    # -------------------------------------------------------------- interface
    def open(self, settings: dict[str, Any]) -> None:
        if set(settings) != set(SETTING_KEYS):
            raise ValueError(f"settings must have the keys {SETTING_KEYS}, got {sorted(settings)}")
        wanted = {"num_classes": int(settings["num_classes"]), "eps": float(settings["eps"]),
                  "order": str(settings["order"]), "dtype": str(settings["dtype"]),
                  "sum_tol": float(settings["sum_tol"])}
        keys = [self._settings_key, self._log_key] + [self._class_key(c) for c in range(wanted["num_classes"])]
        fields = {"format": FORMAT, "format_version": STORE_FORMAT_VERSION, **wanted}
        args = [x for k, v in fields.items() for x in (k, repr(v) if isinstance(v, float) else str(v))]
        created, found, logged, held = self._call(self._open_script, keys=keys, args=args)
        if created == -1:
            raise StoreError(f"{self.describe()} has no settings record but holds {_text(found)}; "
                             "refusing content that was not written by modelguard_fast")
        if created == 0:
            check_settings(self._decode_settings(found), wanted, self.describe())
            if logged != held:
                raise StoreError(f"{self.describe()}: its log names {logged} centroids but its class lists hold "
                                 f"{held}; refusing a corrupted codebook")
        self._check_foreign_keys(set(keys))
        self._settings = wanted
        self._class_keys = keys[2:]
        log.info("%s: %s codebook (%s)", self.describe(), "created" if created == 1 else "opened", wanted)

    def _decode_settings(self, flat: list) -> dict[str, Any]:
        found = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        if found.get("format") != FORMAT:
            raise StoreError(f"{self.describe()}: the settings record is not a modelguard_fast codebook's "
                             f"(format {found.get('format')!r})")
        version = found.get("format_version")
        if version != str(STORE_FORMAT_VERSION):
            raise StoreError(f"{self.describe()} has format_version {version!r}; this modelguard_fast reads "
                             f"{STORE_FORMAT_VERSION}")
        if set(found) != {"format", "format_version", *SETTING_KEYS}:
            raise StoreError(f"{self.describe()}: the settings record has fields {sorted(found)}, expected "
                             f"{sorted(['format', 'format_version', *SETTING_KEYS])}")
        try:
            return {"num_classes": int(found["num_classes"]), "eps": float(found["eps"]), "order": found["order"],
                    "dtype": found["dtype"], "sum_tol": float(found["sum_tol"])}
        except ValueError:
            raise StoreError(f"{self.describe()}: the settings record is corrupted: {found}") from None

    def _check_foreign_keys(self, expected: set[str]) -> None:
        pattern = self._prefix.replace("{", "\\{").replace("}", "\\}") + "*"
        foreign = [k for k in (_text(k) for k in self._call(lambda: list(self._client.scan_iter(match=pattern))))
                   if k not in expected]
        if foreign:
            raise StoreError(f"{self.describe()} holds keys that are not part of its codebook: {sorted(foreign)[:5]}")

    def fetch(self, since: Sequence[int]) -> list[tuple[int, bytes]]:
        self._require_open()
        return self._sync(since, [])[1]

    def append(self, base: Sequence[int], classes: np.ndarray,
               rows: np.ndarray) -> tuple[bool, list[tuple[int, bytes]]]:
        self._require_open()
        return self._sync(base, records_of(classes, rows, self._settings["dtype"]))

    def _sync(self, since: Sequence[int], records: list[tuple[int, bytes]]) -> tuple[bool, list[tuple[int, bytes]]]:
        """One run of the sync script (compare-and-append `records`, and what others appended beyond `since`).

        `since` holds the caller's count of every class; together they are the
        first sum(since) entries of the log (a guard's codebooks always are).
        """
        counts = np.asarray(since)
        if counts.shape != (len(self._class_keys),) or counts.dtype.kind not in "iu":
            raise ValueError(f"since must hold an integer count for each of the {len(self._class_keys)} classes, "
                             f"got {counts.dtype} of shape {counts.shape}")
        if counts.min(initial=0) < 0:
            raise ValueError(f"since must hold counts >= 0, got {counts.tolist()}")
        since = counts.tolist()
        keys = [self._settings_key]
        args: list[Any] = [sum(since)]
        for c, payload in records:
            args += [c, since[c], payload]
        if self.wait_replicas and records:
            def run():
                pipe = self._client.pipeline(transaction=False)
                self._sync_script(keys=keys, args=args, client=pipe)
                pipe.execute_command("WAIT", self.wait_replicas, int(self.wait_timeout * 1000))
                return pipe.execute()
            result, replicas = self._call(run)
            if result != -1 and result[0] == 1 and replicas < self.wait_replicas:
                raise StoreUnavailable(f"{self.describe()}: the append reached {replicas} of the "
                                       f"{self.wait_replicas} replicas required within {self.wait_timeout} s")
        else:
            result = self._call(self._sync_script, keys=keys, args=args)
        if result == -1:
            raise StoreError(f"{self.describe()} lost its settings record (was the Redis data flushed or lost?); "
                             "refusing to serve from it")
        if result[0] == -2:
            raise StoreError(f"{self.describe()} holds {result[1]} centroids, fewer than the {sum(since)} this "
                             "guard already answered with: acknowledged data was lost (enable AOF with "
                             "appendfsync always, or wait_replicas)")
        newer = []
        for named, n, logged, rows in result[3:]:
            cls = int(_text(named)) if _CLASS.fullmatch(_text(named)) else -1
            if not 0 <= cls < len(since) or n - logged != since[cls] or len(rows) != logged:
                held = f"this guard holds {since[cls]}" if 0 <= cls < len(since) else "no such class"
                raise StoreError(f"{self.describe()}: its log names class {_text(named)!r} {logged} times past "
                                 f"this guard's position, and that class holds {n} centroids ({held}): a corrupted "
                                 "codebook, or counts that are not the state of a prefix of its log; refusing it")
            newer += [(cls, bytes(row)) for row in rows]
        if result[0] == 0:  # a conflict must be explained by the log: rows past the caller's position
            cls, n = int(result[2][0]), result[2][1]
            logged = sum(1 for c, _ in newer if c == cls)
            if n != since[cls] + logged:
                raise StoreError(f"{self.describe()}: class {cls} holds {n} centroids, but this guard holds "
                                 f"{since[cls]} and the log names {logged} more: a corrupted codebook (rows outside "
                                 "its log, or acknowledged ones lost); refusing it")
        return result[0] == 1, newer

    def counts(self) -> np.ndarray:
        self._require_open()

        def run():
            pipe = self._client.pipeline(transaction=False)
            for key in self._class_keys:
                pipe.llen(key)
            return pipe.execute()
        return np.asarray(self._call(run), dtype=np.int64).reshape(len(self._class_keys))

    def settings(self) -> dict[str, Any]:
        """The settings recorded under the name (as opened)."""
        self._require_open()
        return dict(self._settings)

    def reset(self) -> None:
        raise StoreError(f"{self.describe()} is shared: resetting it would change answers other replicas gave; "
                         "use a new name")

    def close(self) -> None:
        self._client.close()


def inspect_settings(url: str, name: str, **options: Any) -> dict[str, Any] | None:
    """The settings recorded under `name` without opening it for a guard (None if there is no codebook)."""
    store = RedisStore(url, name, **options)
    try:
        flat = store._call(store._client.hgetall, store._settings_key)
        if not flat:
            return None
        return store._decode_settings([x for kv in flat.items() for x in kv])
    finally:
        store.close()
