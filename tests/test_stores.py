"""Codebook stores: the local short form, and RedisStore against a real private redis-server."""

import re
import time

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.stores import LocalStore, RedisStore, StoreError, StoreUnavailable
from reference_mgs import ReferenceModelGuardS
from streams import classifier_like

C, EPS = 10, 0.5


def guard_on(server, name="model", **settings):
    kwargs = dict(num_classes=C, eps=EPS) | settings
    return mgf.ModelGuardS(kwargs.pop("num_classes"), store=RedisStore(server.url, name, socket_timeout=1.0,
                                                                       connect_timeout=1.0), **kwargs)


def test_journal_is_the_short_form_of_a_local_store(tmp_path):
    stream = classifier_like(1500, C, seed=3)
    short = mgf.ModelGuardS(C, eps=EPS, journal=tmp_path / "a.journal")
    long = mgf.ModelGuardS(C, eps=EPS, store=LocalStore(journal=tmp_path / "b.journal"))
    np.testing.assert_array_equal(short(stream), long(stream))
    short.close()
    long.close()
    reopened = mgf.ModelGuardS(C, eps=EPS, store=LocalStore(journal=tmp_path / "a.journal"))
    np.testing.assert_array_equal(reopened.state_dict()["centroids"], long.state_dict()["centroids"])
    with pytest.raises(ValueError, match="journal or store, not both"):
        mgf.ModelGuardS(C, journal=tmp_path / "c.journal", store=LocalStore())
    with pytest.raises(TypeError, match="store must be a modelguard_fast.stores.CodebookStore, got str"):
        mgf.ModelGuardS(C, store="redis://localhost")


class RecordingStore(LocalStore):
    """A LocalStore that records every exchange the guard has with it."""

    def __init__(self, journal=None):
        super().__init__(journal)
        self.calls = []

    def append(self, base, classes, rows):
        self.calls.append(("append", list(base), list(classes)))
        return super().append(base, classes, rows)

    def fetch(self, since):
        self.calls.append(("fetch", list(since)))
        return super().fetch(since)


def test_the_guard_reaches_its_journal_only_through_the_store(tmp_path):
    stream = classifier_like(1200, C, seed=12)
    store = RecordingStore(journal=tmp_path / "g.journal")
    guard = mgf.ModelGuardS(C, eps=EPS, store=store)
    assert guard.codebook_store is store and store.calls == [("fetch", [0] * C)]
    guard(stream[:600])
    guard(stream[600:])
    appended = [record for call in store.calls if call[0] == "append" for record in call[2]]
    assert len(appended) == guard.num_centroids == store.journal.head[0] > 0
    guard.close()
    with pytest.raises(RuntimeError, match="this guard's journal was closed"):
        guard(stream[:5])
    reopened = RecordingStore(journal=tmp_path / "g.journal")
    again = mgf.ModelGuardS(C, eps=EPS, store=reopened)
    assert reopened.calls == [("fetch", [0] * C)] and again.num_centroids == len(appended)  # restored from it
    np.testing.assert_array_equal(again(stream), ReferenceModelGuardS(C, EPS)(stream))
    assert again.centroid_counts.tolist() == reopened.counts().tolist()
    again.reset()
    assert reopened.counts().sum() == 0 == reopened.journal.head[0] == again.num_centroids
    again.close()
    memory = mgf.ModelGuardS(C, eps=EPS)
    assert isinstance(memory.codebook_store, LocalStore) and memory.codebook_store.journal is None
    memory(stream)
    assert memory.codebook_store.counts().tolist() == memory.centroid_counts.tolist()
    with pytest.raises(TypeError, match="journal must be a path .* or None, got int"):
        LocalStore(journal=3)
    with pytest.raises(StoreError, match="already open for a guard"):
        mgf.ModelGuardS(C, eps=EPS, store=memory.codebook_store)


def test_guards_on_one_name_give_one_sequential_order(redis_server):
    stream = classifier_like(3000, C, seed=4)
    calls = [stream[:1000], stream[500:2000], stream[1500:3000], stream[:3000:7], classifier_like(300, C, seed=40)]
    a, b = guard_on(redis_server), guard_on(redis_server)
    answers = [guard(rows) for guard, rows in zip((a, b, a, b, a), calls)]
    # The calls ran one after another: the reference sees them in the same order.
    reference = ReferenceModelGuardS(C, EPS)
    for rows, given in zip(calls, answers):
        np.testing.assert_array_equal(given, reference(rows))
    store_rows = RedisStore(redis_server.url, "model")
    store_rows.open(a._journal_meta())
    assert store_rows.counts().tolist() == [len(book) for book in reference.books]
    missing = sum(map(len, reference.books)) - b.num_centroids
    assert missing > 0 and b.refresh() == missing and b.refresh() == 0  # b had not seen a's last appends
    assert a.centroid_counts.tolist() == b.centroid_counts.tolist() == store_rows.counts().tolist()
    other = guard_on(redis_server, name="another-model")
    assert other.num_centroids == 0  # names are separate codebooks


def test_nearest_order_and_reset_are_refused_on_a_shared_store(redis_server):
    with pytest.raises(ValueError, match="order='nearest' cannot use a shared store"):
        guard_on(redis_server, order="nearest")
    guard = guard_on(redis_server)
    guard(classifier_like(50, C, seed=1))
    with pytest.raises(ValueError, match="never reset"):
        guard.reset()
    assert guard.num_centroids > 0


@pytest.mark.parametrize("setting", [{"eps": 0.4}, {"num_classes": 11}, {"dtype": "float64"}, {"sum_tol": 1e-4}])
def test_other_settings_are_refused_naming_both(redis_server, setting):
    guard_on(redis_server)(classifier_like(20, C, seed=2))
    key, value = next(iter(setting.items()))
    with pytest.raises(StoreError, match=rf"written with settings .*'{key}': .* but this guard has .*'{key}': {value!r}"):
        guard_on(redis_server, **setting)


def corrupt(server, guard, action):
    client = server.client()
    key = "mgf:{model}:class:%d"
    row = guard.centroids(3)[0]
    logged = action in ("short row", "NaN", "negative", "bad sum", "wrong class")
    if logged:  # a bad row appended as the sync script appends: to its class list and to the log
        client.rpush("mgf:{model}:log", 5 if action == "wrong class" else 3)
    if action == "foreign key":
        client.set("mgf:{model}:extra", b"x")
    elif action == "wrong type":
        client.delete(key % 4)
        client.set(key % 4, b"not a list")
    elif action == "short row":
        client.rpush(key % 3, row.tobytes()[:-4])
    elif action == "NaN":
        client.rpush(key % 3, np.where(row == row.max(), np.nan, row).astype(np.float32).tobytes())
    elif action == "negative":
        bad = row.copy()
        bad[bad.argmin()] = -0.01
        client.rpush(key % 3, bad.tobytes())
    elif action == "bad sum":
        client.rpush(key % 3, (row * 1.5).tobytes())
    elif action == "wrong class":
        client.rpush(key % 5, row.tobytes())  # a class-3 centroid in class 5's list
    elif action == "settings format":
        client.hset("mgf:{model}:settings", "format_version", "99")
    elif action == "orphan lists":
        client.delete("mgf:{model}:settings")
    elif action == "unlogged row":
        client.rpush(key % 3, row.tobytes())
    elif action == "foreign log entry":
        client.lset("mgf:{model}:log", 0, "x3")
    client.close()


@pytest.mark.parametrize("action, message", [
    ("foreign key", r"keys that are not part of its codebook: \['mgf:\{model\}:extra'\]"),
    ("wrong type", "WRONGTYPE"),
    ("short row", "not of 40 bytes"),
    ("NaN", "must be finite"),
    ("negative", "non-negative"),
    ("bad sum", "sum to 1"),
    ("wrong class", "under a class other than its top-1 class"),
    ("settings format", "format_version '99'"),
    ("orphan lists", "has no settings record but holds"),
    ("unlogged row", r"its log names 83 centroids but its class lists hold 84"),
    ("foreign log entry", r"its log names class 'x3' 1 times past this guard's position, .* \(no such class\)"),
])
def test_corrupted_or_foreign_content_is_refused(redis_server, action, message):
    first = guard_on(redis_server)
    stream = classifier_like(400, C, seed=5)
    first(stream)
    before = first.state_dict()
    corrupt(redis_server, first, action)
    with pytest.raises(StoreError, match=message):
        guard_on(redis_server)
    np.testing.assert_array_equal(first.state_dict()["centroids"], before["centroids"])


def test_unreachable_store_answers_hits_refuses_misses_and_recovers(redis_server):
    stream = classifier_like(2000, C, seed=6)
    guard = guard_on(redis_server)
    given = guard(stream[:1500])
    before = guard.state_dict()
    redis_server.kill()

    started = time.monotonic()
    np.testing.assert_array_equal(guard(stream[:1500]), given)  # every row hits: answered locally
    fresh = classifier_like(200, C, seed=60)
    with pytest.raises(StoreUnavailable, match=r"Redis store 'model' at redis://127.0.0.1:\d+/0 is unreachable"):
        guard(fresh)
    assert time.monotonic() - started < 10  # bounded timeouts, no hang
    after = guard.state_dict()
    np.testing.assert_array_equal(after["centroids"], before["centroids"])
    np.testing.assert_array_equal(after["counts"], before["counts"])
    assert guard.num_queries == 1500 * 2

    redis_server.start()  # same data folder: the AOF brings the codebook back
    other = guard_on(redis_server)
    from_other = other(fresh[:100])  # another replica appends while the first one was cut off
    answers = guard(fresh)  # the same guard, not restarted
    np.testing.assert_array_equal(answers[:100], from_other)
    reference = ReferenceModelGuardS(C, EPS)
    reference(stream[:1500])
    reference(fresh[:100])
    np.testing.assert_array_equal(answers, reference(fresh))


def test_lost_store_data_is_refused_not_served(redis_server):
    guard = guard_on(redis_server)
    guard(classifier_like(300, C, seed=8))
    client = redis_server.client()
    client.flushall()
    client.close()
    with pytest.raises(StoreError, match="lost its settings record"):
        guard(classifier_like(50, C, seed=80))
    fresh = guard_on(redis_server)  # a new codebook on the emptied name
    fresh(classifier_like(5, C, seed=81))
    with pytest.raises(StoreError, match="fewer than the .* this guard already answered with"):
        guard(classifier_like(50, C, seed=82))


def test_store_arguments_are_checked():
    with pytest.raises(ValueError, match="name must be 1 to 200 of the characters .* got 'a b'"):
        RedisStore("redis://127.0.0.1:1/0", "a b")
    with pytest.raises(ValueError, match="socket_timeout must be a number of seconds in \\(0, 3600\\), got 0"):
        RedisStore("redis://127.0.0.1:1/0", "m", socket_timeout=0)
    with pytest.raises(ValueError, match="wait_replicas must be an integer >= 0, got -1"):
        RedisStore("redis://127.0.0.1:1/0", "m", wait_replicas=-1)
    with pytest.raises(StoreUnavailable, match="Redis store 'm' at redis://127.0.0.1:1/0 is unreachable"):
        mgf.ModelGuardS(C, store=RedisStore("redis://127.0.0.1:1/0", "m", retries=0))


def test_wait_replicas_answers_only_what_the_replicas_hold(redis_server, tmp_path):
    from redis_server import RedisServer

    stream = classifier_like(400, C, seed=9)
    lonely = mgf.ModelGuardS(C, eps=EPS, store=RedisStore(redis_server.url, "model", wait_replicas=1,
                                                           wait_timeout=0.2))
    with pytest.raises(StoreUnavailable, match=r"the append reached 0 of the 1 replicas required within 0.2 s"):
        lonely(stream)
    assert lonely.num_centroids == 0 and lonely.num_queries == 0  # nothing answered, nothing kept locally

    replica = RedisServer(tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(redis_server.port))).start()
    try:
        deadline = time.monotonic() + 20
        while replica.client().info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not connect"
            time.sleep(0.05)
        answers = lonely(stream)  # the same guard: it catches up with the unacknowledged append, then appends
        np.testing.assert_array_equal(answers, ReferenceModelGuardS(C, EPS)(stream))
        client = replica.client()
        held = sum(client.llen(f"mgf:{{model}}:class:{c}") for c in range(C))
        client.close()
        assert held == lonely.num_centroids > 0  # the replica holds every centroid an answer used
    finally:
        replica.kill()


def test_one_exchange_appends_and_returns_what_other_guards_appended(redis_server):
    settings = {"num_classes": C, "eps": EPS, "order": "first", "dtype": "float32", "sum_tol": 1e-3}
    a, b = RedisStore(redis_server.url, "model"), RedisStore(redis_server.url, "model")
    a.open(settings)
    b.open(settings)
    eye = np.eye(C, dtype=np.float32)
    row = {c: eye[c].tobytes() for c in range(C)}
    zero = [0] * C
    assert a.append(zero, np.array([1, 2, 1]), eye[[1, 2, 1]]) == (True, [])
    # b saw nothing: its append to class 1 conflicts and the reply carries every class's newer rows
    assert b.append(zero, np.array([1]), eye[[1]]) == (False, [(1, row[1]), (1, row[1]), (2, row[2])])  # by class
    # an append to an untouched class succeeds and returns the other classes' newer rows only
    assert b.append(zero, np.array([3]), eye[[3]]) == (True, [(1, row[1]), (1, row[1]), (2, row[2])])
    assert a.counts().tolist() == [0, 2, 1, 1] + [0] * (C - 4)
    # the log is [1, 2, 1, 3]: a caller holding its first two entries gets the last two, by class
    assert a.fetch([0, 1, 1, 0] + [0] * (C - 4)) == [(1, row[1]), (3, row[3])]
    with pytest.raises(StoreError, match=r"names class '1' 1 times past .* holds 2 centroids \(this guard holds "
                                         r"2\): a corrupted codebook, or counts that are not the state of a prefix"):
        a.fetch([0, 2, 0, 0] + [0] * (C - 4))  # two entries, but not the log's first two
    with pytest.raises(ValueError, match=f"since must hold an integer count for each of the {C} classes, "
                                         r"got int64 of shape \(3,\)"):
        a.fetch([0, 0, 0])


def test_a_conflict_costs_one_more_exchange_not_two(redis_server):
    stream = classifier_like(600, C, seed=11)
    a, b = guard_on(redis_server), guard_on(redis_server)
    a(stream[:300])
    client = redis_server.client()

    def scripts_run():
        return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    before = scripts_run()
    answers = b(stream[:300])  # b's copy is empty: its append conflicts, and the reply catches it up
    assert scripts_run() - before == 1  # the redo hits a's centroids only: no second exchange
    assert b.centroid_counts.tolist() == a.centroid_counts.tolist()
    np.testing.assert_array_equal(answers, a(stream[:300]))
    client.close()


def test_an_exchange_reads_what_changed_not_every_class(redis_server):
    # Format 1 compared every class's length on every exchange (C LLEN calls); the log lets the
    # script read only the entries past the caller's position and the classes they name.
    classes = 100
    settings = {"num_classes": classes, "eps": EPS, "order": "first", "dtype": "float32", "sum_tol": 1e-3}
    a, b = RedisStore(redis_server.url, "wide"), RedisStore(redis_server.url, "wide")
    a.open(settings)
    b.open(settings)
    eye = np.eye(classes, dtype=np.float32)
    held = np.zeros(classes, dtype=np.int64)
    client = redis_server.client()

    def server_calls(command):
        return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)

    assert b.append(held, np.array([7, 8]), eye[[7, 8]]) == (True, [])
    before = {c: server_calls(c) for c in ("llen", "lrange", "rpush")}
    appended, newer = a.append(held, np.array([9]), eye[[9]])  # one exchange: a appends, and learns of 7 and 8
    assert appended and newer == [(7, eye[7].tobytes()), (8, eye[8].tobytes())]
    # LLEN: the log, class 9 (the compare) and classes 7 and 8 (the fetch); LRANGE: the log and 7 and 8;
    # RPUSH: class 9 and the log
    assert {c: server_calls(c) - before[c] for c in before} == {"llen": 4, "lrange": 3, "rpush": 2}
    assert client.lrange("mgf:{wide}:log", 0, -1) == [b"7", b"8", b"9"]
    client.close()


def log_position_of(server, guard, name="model"):
    """The log position whose state the guard's codebooks are (None if they are no log prefix)."""
    client = server.client()
    log = [int(c) for c in client.lrange(f"mgf:{{{name}}}:log", 0, -1)]
    counts = guard.centroid_counts
    position = int(counts.sum())
    prefix = np.bincount(log[:position], minlength=C).tolist() == counts.tolist() and all(
        b"".join(client.lrange(f"mgf:{{{name}}}:class:{c}", 0, int(counts[c]) - 1)) == guard.centroids(c).tobytes()
        for c in range(C) if counts[c])
    client.close()
    return position if prefix else None


def class_rows(cls, n, seed):
    """n class-`cls` rows, each farther than EPS from the others."""
    rows = np.random.default_rng(seed).random((n, C)) * 0.02
    rows[:, cls] = 5.0
    rows[np.arange(n), (cls + 1 + np.arange(n)) % C] += 3.0  # n < C; L1 distances about 0.7 > EPS
    return (rows / rows.sum(1, keepdims=True)).astype(np.float32)


def test_rows_that_cannot_be_adopted_after_an_append_leave_the_codebooks_a_log_prefix(redis_server):
    # max_centroids is the guard's own setting: a replica with none fills class 0 beyond this guard's
    # limit; this guard's append to class 1 succeeds, but the reply's class-0 rows cannot be adopted.
    free, limited = guard_on(redis_server), guard_on(redis_server, max_centroids=2)
    free(class_rows(0, 3, seed=1))
    message = r"holds 3 centroids in one class, more than max_centroids=2"
    with pytest.raises(StoreError, match=message):
        limited(class_rows(1, 1, seed=2))
    assert limited.centroid_counts.tolist() == [0] * C
    assert log_position_of(redis_server, limited) == 0  # before the batch: the append stays in the store
    with pytest.raises(StoreError, match=message):  # the same reason every time, not a "non-prefix" refusal
        limited(class_rows(1, 1, seed=2))
    assert log_position_of(redis_server, limited) == 0


def test_an_interrupted_adoption_after_an_append_leaves_the_codebooks_a_log_prefix(redis_server, monkeypatch):
    first, second = guard_on(redis_server), guard_on(redis_server)
    first(class_rows(0, 2, seed=3))
    adopt = mgf.ModelGuardS._adopt

    def interrupted(self, records):
        if records:
            raise KeyboardInterrupt
        adopt(self, records)
    monkeypatch.setattr(mgf.ModelGuardS, "_adopt", interrupted)
    rows = class_rows(1, 1, seed=4)
    with pytest.raises(KeyboardInterrupt):
        second(rows)  # appended to the store, then interrupted while adopting first's class-0 rows
    assert log_position_of(redis_server, second) == 0
    monkeypatch.setattr(mgf.ModelGuardS, "_adopt", adopt)
    np.testing.assert_array_equal(second(rows), rows)  # its own centroid, fetched back: no refusal
    assert log_position_of(redis_server, second) == 3


@pytest.mark.parametrize("entry", [b"\xff", b"01", b" 3", b"3.0", b"-3", "\u0663".encode()])  # U+0663: Arabic 3
def test_log_entries_that_are_not_a_class_number_are_refused(redis_server, entry):
    first = guard_on(redis_server)
    first(classifier_like(300, C, seed=12))
    client = redis_server.client()
    client.rpush("mgf:{model}:class:3", first.centroids(3)[0].tobytes())  # a row counted by open...
    client.rpush("mgf:{model}:log", entry)  # ...logged under a name that is no class number
    client.close()
    message = "its log names class " + re.escape(repr(entry.decode(errors="backslashreplace"))) + \
        r" 1 times past this guard's position, and that class holds \d+ centroids \(no such class\)"
    with pytest.raises(StoreError, match=message):
        first.refresh()
    with pytest.raises(StoreError, match="a corrupted codebook"):  # from the log's start: class 3 is one short
        guard_on(redis_server)


def test_foreign_bytes_under_the_name_are_refused_as_store_errors(redis_server):
    guard_on(redis_server)(classifier_like(100, C, seed=13))
    client = redis_server.client()
    client.set(b"mgf:{model}:\xff", b"x")
    with pytest.raises(StoreError, match=r"keys that are not part of its codebook: \['mgf:\{model\}:\\\\xff'\]"):
        guard_on(redis_server)
    client.delete(b"mgf:{model}:\xff")
    client.hset("mgf:{model}:settings", "order", b"\xfe")
    with pytest.raises(StoreError, match=r"written with settings .*'order': '\\\\xfe'"):
        guard_on(redis_server)
    client.close()


def test_a_busy_server_is_unavailable_not_untrustworthy(tmp_path):
    import threading

    from redis_server import RedisServer

    server = RedisServer(tmp_path / "redis", extra=("--busy-reply-threshold", "20")).start()
    guard = guard_on(server)
    client = server.client()
    try:
        busy = threading.Thread(target=client.eval, args=(  # another client's long script: 1.5 s
            "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] repeat t = redis.call('TIME') "
            "until t[1] * 1e6 + t[2] - s > 1.5e6 return 1", 0))
        busy.start()
        probe = server.client()
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the server never became busy"
            try:
                probe.ping()
            except Exception as err:  # noqa: BLE001 - BUSY is a plain ResponseError in redis-py
                assert str(err).startswith("BUSY")
                break
        rows = classifier_like(50, C, seed=14)
        with pytest.raises(StoreUnavailable, match=r"Redis store 'model' at .* cannot serve now: BUSY"):
            guard(rows)
        assert guard.num_centroids == 0
        busy.join()
        np.testing.assert_array_equal(guard(rows), ReferenceModelGuardS(C, EPS)(rows))  # served once it is free
        probe.close()
    finally:
        busy.join()
        client.close()
        server.kill()


def test_a_primary_turned_replica_is_unavailable_not_untrustworthy(redis_server, tmp_path):
    from redis_server import RedisServer

    guard = guard_on(redis_server)
    guard(classifier_like(100, C, seed=15))
    old = redis_server.client()
    old.config_set("repl-diskless-sync-delay", 0)  # a replica syncs at once, not after 5 s
    promoted = RedisServer(tmp_path / "promoted", extra=("--replicaof", "127.0.0.1", str(redis_server.port),
                                                         "--repl-diskless-sync-delay", "0")).start()
    try:
        def linked(server):
            client = server.client()
            deadline = time.monotonic() + 20
            while client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not connect"
                time.sleep(0.05)
            return client
        linked(promoted).replicaof("NO", "ONE")  # a failover: the replica is promoted...
        old.replicaof("127.0.0.1", promoted.port)  # ...and the guard's server now follows it
        linked(redis_server).close()
        before = guard.state_dict()
        with pytest.raises(StoreUnavailable, match=r"cannot serve now: You can't write against a read only replica"):
            guard(classifier_like(100, C, seed=16))
        np.testing.assert_array_equal(guard.state_dict()["centroids"], before["centroids"])
        old.replicaof("NO", "ONE")
    finally:
        old.close()
        promoted.kill()


def test_a_conflict_the_log_does_not_explain_is_refused_at_once(redis_server):
    # A row in a class list without its log entry (a foreign writer, a hand-made restore): a new guard's
    # open refuses it; a running guard's append to that class conflicts, and no log entry explains why.
    guard = guard_on(redis_server)
    guard(classifier_like(300, C, seed=17))
    client = redis_server.client()
    client.rpush("mgf:{model}:class:3", guard.centroids(3)[0].tobytes())
    before = guard.state_dict()
    rows = classifier_like(3000, C, seed=18)
    rows = rows[rows.argmax(1) == 3][:20]  # class-3 rows, new ones among them
    scripts = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    held = int(before["counts"][3])
    with pytest.raises(StoreError, match=rf"class 3 holds {held + 1} centroids, but this guard holds {held} and "
                                         r"the log names 0 more: a corrupted codebook"):
        guard(rows)  # was: 64 exchanges, then StoreUnavailable "other replicas keep appending"
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] - scripts == 1
    np.testing.assert_array_equal(guard.state_dict()["centroids"], before["centroids"])
    client.close()
