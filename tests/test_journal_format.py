"""Journal format 2: records bound to their place, files that are not journals refused, nothing cut destroyed."""

import logging
import multiprocessing
import os
import struct
import time
import zlib

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.persistence import journal as jf
from streams import classifier_like

C = 10
RECORD = jf._RECORD_HEAD.size + C * 4 + jf._CHAIN + 4  # one centroid's record


def guard(path=None, **kw):
    return mgf.ModelGuardS(C, eps=0.7, journal=path, **kw)


def written(tmp_path, rows=400, seed=11):
    """A closed journal of at least 4 records, and the answers its guard gave."""
    path = tmp_path / "guard.journal"
    g = guard(path)
    out = g(classifier_like(rows, C, seed=seed))
    count = g.num_centroids
    g.close()
    assert count >= 4
    return path, out, count


def split(path):
    data = path.read_bytes()
    _, _, offset = jf._parse_header(data, path)
    body = data[offset:]
    assert len(body) % RECORD == 0
    return data[:offset], [body[i : i + RECORD] for i in range(0, len(body), RECORD)]


@pytest.mark.parametrize("edit", ["delete", "duplicate", "swap", "delete_first", "splice"])
def test_records_out_of_place_are_refused(tmp_path, edit):
    path, _, _ = written(tmp_path)
    header, records = split(path)
    if edit == "delete":
        records = records[:1] + records[2:]
    elif edit == "delete_first":
        records = records[1:]
    elif edit == "duplicate":
        records = records[:2] + records[1:]
    elif edit == "swap":
        records[1], records[2] = records[2], records[1]
    else:  # a record of another journal with the same settings, in the same place
        (tmp_path / "other").mkdir()
        other, _, _ = written(tmp_path / "other", seed=12)
        records[1] = split(other)[1][1]
    path.write_bytes(header + b"".join(records))
    match = "does not chain" if edit == "splice" else "sequence number"
    with pytest.raises(mgf.JournalError, match=match):
        guard(path)


def test_resequenced_records_are_refused_by_the_chain(tmp_path):
    # A swap that also rewrites sequence numbers and checksums still breaks the chain.
    path, _, _ = written(tmp_path)
    header, records = split(path)
    records[1], records[2] = records[2], records[1]
    fixed = []
    for i, rec in enumerate(records):
        rec = rec[:4] + struct.pack("<Q", i) + rec[12:-4]
        fixed.append(rec + struct.pack("<I", zlib.crc32(rec)))
    path.write_bytes(header + b"".join(fixed))
    with pytest.raises(mgf.JournalError, match="record 1 does not chain"):
        guard(path)


def test_zero_bytes_and_short_headers_are_not_journals(tmp_path):
    path, _, _ = written(tmp_path)
    data = path.read_bytes()
    path.write_bytes(b"")
    with pytest.raises(mgf.JournalError, match=r"is empty \(0 bytes\).*refusing to start a new journal"):
        guard(path)
    assert path.read_bytes() == b""  # never replaced
    path.write_bytes(data[:10])
    with pytest.raises(mgf.JournalError, match="header is truncated"):
        guard(path)


def test_header_only_is_an_empty_journal_and_head_tracks_the_end(tmp_path):
    path, _, count = written(tmp_path)
    header, records = split(path)
    g = guard(path)
    assert g.codebook_store.journal.head[0] == count
    g.close()
    path.write_bytes(header)  # the documented limit: a cut at a record boundary looks like fewer records
    g = guard(path)
    assert g.num_centroids == 0 and g.codebook_store.journal.head[0] == 0
    g.close()


@pytest.mark.parametrize("damage", ["short", "bitflip"])
def test_a_bad_last_record_is_cut_but_kept_aside(tmp_path, caplog, damage):
    path, _, count = written(tmp_path)
    original = path.read_bytes()
    if damage == "short":
        path.write_bytes(original + original[-RECORD : -RECORD + 20])
        expected_count, cut = count, original[-RECORD : -RECORD + 20]
    else:
        data = bytearray(original)
        data[-RECORD + 30] ^= 0x08  # one bit of the last (fsynced) record's payload
        path.write_bytes(bytes(data))
        expected_count, cut = count - 1, bytes(data[-RECORD:])
    with caplog.at_level(logging.WARNING, logger="modelguard_fast.persistence.journal"):
        g = guard(path)
    assert g.num_centroids == expected_count
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("guard.journal.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == cut
    assert "kept in" in caplog.text and str(aside[0]) in caplog.text
    g(classifier_like(100, C, seed=13))  # appends cleanly after the cut
    n = g.num_centroids
    g.close()
    assert guard(path).num_centroids == n


def test_bad_record_followed_by_data_is_refused(tmp_path):
    path, _, _ = written(tmp_path)
    data = bytearray(path.read_bytes())
    data[-2 * RECORD + 20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(mgf.JournalError, match="record .* is corrupted .* followed by more data"):
        guard(path)


def write_format1(path, meta, rows, classes):
    text = __import__("json").dumps(meta, sort_keys=True).encode()
    out = jf.MAGIC_V1 + struct.pack("<I", len(text)) + text + struct.pack("<I", zlib.crc32(text))
    for c, row in zip(classes, rows):
        keyed = struct.pack("<I", int(c)) + row.tobytes()
        out += struct.pack("<I", jf.RECORD_MAGIC_V1) + keyed + struct.pack("<I", zlib.crc32(keyed))
    path.write_bytes(out)


def test_format1_journal_is_converted_and_kept(tmp_path, caplog):
    stream = classifier_like(600, C, seed=14)
    reference = guard()
    answers = reference(stream[:300])
    state = reference.state_dict()
    classes = np.repeat(np.arange(C), state["counts"])
    path = tmp_path / "old.journal"
    write_format1(path, {"num_classes": C, "eps": 0.7, "order": "first", "dtype": "float32"},
                  state["centroids"], classes)
    old = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        g = guard(path)
    assert "converted format-1 journal" in caplog.text
    np.testing.assert_array_equal(g(stream[:300]), answers)
    np.testing.assert_array_equal(g(stream[300:]), reference(stream[300:]))
    g.close()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("old.journal.format1-")]
    assert len(kept) == 1 and kept[0].read_bytes() == old
    assert path.read_bytes().startswith(jf.MAGIC)
    assert guard(path).num_centroids == reference.num_centroids


def test_sum_tol_is_recorded_so_a_loose_journal_reopens(tmp_path):
    path = tmp_path / "loose.journal"
    rows = classifier_like(200, C, seed=15).astype(np.float64)
    rows[:, 0] += 0.004  # sums 1.004: admitted with sum_tol=0.01, refused with the default 1e-3
    g = guard(path, sum_tol=0.01)
    out = g(rows)
    n = g.num_centroids
    g.close()
    reopened = guard(path, sum_tol=0.01)
    assert reopened.num_centroids == n
    np.testing.assert_array_equal(reopened(rows), out)
    reopened.close()
    with pytest.raises(mgf.JournalError, match="was written with settings.*'sum_tol': 0.01"):
        guard(path)


# ------------------------------------------------------------------ paths
def test_paths_that_are_not_journal_files_are_refused(tmp_path):
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(mgf.JournalError, match="is a character device"):
        guard(tmp_path / "zero")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(mgf.JournalError, match="is a FIFO"):
        guard(tmp_path / "fifo")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(mgf.JournalError, match="is empty"):
        guard(tmp_path / "empty")
    (tmp_path / "folder").mkdir()
    with pytest.raises(mgf.JournalError, match="is a directory"):
        guard(tmp_path / "folder")
    assert (tmp_path / "zero").is_symlink() and (tmp_path / "empty").read_bytes() == b""


def test_reset_through_a_symlink_replaces_the_target(tmp_path):
    target = tmp_path / "data" / "guard.journal"
    target.parent.mkdir()
    link = tmp_path / "guard.journal"
    link.symlink_to(target)
    g = guard(link)
    g(classifier_like(200, C, seed=16))
    g.reset()
    g(classifier_like(50, C, seed=17))
    n = g.num_centroids
    g.close()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert guard(target).num_centroids == n


def test_reset_is_refused_on_a_closed_guard(tmp_path):
    path = tmp_path / "guard.journal"
    g = guard(path)
    g(classifier_like(100, C, seed=18))
    g.close()
    other = guard(path)
    n = other.num_centroids
    with pytest.raises(RuntimeError, match="journal was closed"):
        g.reset()
    other.close()
    assert guard(path).num_centroids == n > 0


def test_failed_reset_leaves_the_old_journal_and_codebooks(tmp_path, monkeypatch):
    path = tmp_path / "guard.journal"
    g = guard(path)
    g(classifier_like(200, C, seed=19))
    before = g.state_dict()
    data = path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jf, "replace_locked", lambda *a: no_space())
    with pytest.raises(mgf.JournalError, match="cannot reset journal .* the old journal is intact"):
        g.reset()
    monkeypatch.undo()
    assert path.read_bytes() == data
    np.testing.assert_array_equal(g.state_dict()["centroids"], before["centroids"])
    g(classifier_like(200, C, seed=20))  # new centroids still reach the journal
    n = g.num_centroids
    g.close()
    assert guard(path).num_centroids == n > len(before["centroids"])
    assert [p.name for p in tmp_path.iterdir()] == ["guard.journal"]


# ------------------------------------------------------------------ processes
def _open_in_turn(path, barrier, results, tries):
    for i in range(tries):
        barrier.wait()
        try:
            j = jf.Journal(f"{path}-{i}", {"k": 1}, 8)
            results.put((i, "opened"))
        except mgf.JournalError as err:
            j = None
            results.put((i, "refused" if "already open" in str(err) else str(err)))
        barrier.wait()  # both tried while the winner still holds its journal
        if j is not None:
            j.close()


def test_two_processes_creating_one_journal_at_once_never_both_succeed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results, tries = ctx.Barrier(2), ctx.Queue(), 150
    procs = [ctx.Process(target=_open_in_turn, args=(tmp_path / "j", barrier, results, tries)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * tries)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    per_try = {}
    for i, what in outcomes:
        per_try.setdefault(i, []).append(what)
    assert all(sorted(v) == ["opened", "refused"] for v in per_try.values()), per_try
    for i in range(tries):  # each file is one complete, empty journal
        jf.Journal(tmp_path / f"j-{i}", {"k": 1}, 8).close()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def _keep_resetting(path, stop_at, done):
    j = jf.Journal(path, {"k": 1}, 8)
    n = 0
    while time.monotonic() < stop_at:
        j.reset({"k": 1})
        n += 1
    done.set()  # before the lock is let go
    j.close()
    os._exit(0 if n > 10 else 1)


def test_no_opener_slips_in_while_another_process_resets(tmp_path):
    path = tmp_path / "j"
    jf.Journal(path, {"k": 1}, 8).close()
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    worker = ctx.Process(target=_keep_resetting, args=(path, time.monotonic() + 1.5, done))
    worker.start()
    time.sleep(0.2)
    slipped_in = refused = 0
    while not done.is_set():
        try:
            jf.Journal(path, {"k": 1}, 8).close()
            slipped_in += not done.is_set()  # opened while the worker still held the journal
        except mgf.JournalError as err:
            assert "already open" in str(err)
            refused += 1
    worker.join()
    assert worker.exitcode == 0
    assert slipped_in == 0 and refused > 100, (slipped_in, refused)


def test_a_forked_child_cannot_write_its_parents_journal(tmp_path):
    path = tmp_path / "guard.journal"
    g = guard(path)
    g(classifier_like(200, C, seed=21))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            g(classifier_like(50, C, seed=22))
        except mgf.JournalError as err:
            code = 0 if "forked child" in str(err) else 4
        except BaseException:
            code = 5
        try:
            g.codebook_store.journal.append([(0, bytes(C * 4))])
        except mgf.JournalError:
            pass
        else:
            code = 6
        os.write(w, bytes([code]))
        os._exit(0)
    os.close(w)
    status = os.read(r, 1)
    os.waitpid(pid, 0)
    os.close(r)
    assert status == bytes([0])
    out = g(classifier_like(300, C, seed=23))  # the parent keeps its lock and its journal
    n = g.num_centroids
    with pytest.raises(mgf.JournalError, match="already open"):
        guard(path)
    g.close()
    reopened = guard(path)
    assert reopened.num_centroids == n
    np.testing.assert_array_equal(reopened(classifier_like(300, C, seed=23)), out)
