"""Snapshots and journals of ModelGuard-S: every future answer survives a round trip."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelguard_fast as mgf
from modelguard_fast.persistence import journal as journal_format
from streams import classifier_like

C = 10


def fresh_guard(**kw):
    return mgf.ModelGuardS(C, eps=0.7, **kw)


def test_save_load_preserves_every_future_answer(tmp_path):
    prefix, suffix = classifier_like(2000, C, seed=1), classifier_like(2000, C, seed=2)
    guard = fresh_guard()
    guard(prefix)
    guard.save(tmp_path / "guard.npz")
    loaded = mgf.ModelGuardS.load(tmp_path / "guard.npz")
    assert (loaded.num_classes, loaded.eps, loaded.order, loaded.dtype) == (C, 0.7, "first", np.float32)
    np.testing.assert_array_equal(loaded.centroid_counts, guard.centroid_counts)
    np.testing.assert_array_equal(loaded(suffix), guard(suffix))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_state_dict_round_trip_and_mismatched_settings():
    guard = fresh_guard()
    guard(classifier_like(500, C, seed=3))
    state = guard.state_dict()
    other = fresh_guard()
    other.load_state_dict(state)
    probe = classifier_like(500, C, seed=4)
    np.testing.assert_array_equal(other(probe), guard(probe))
    with pytest.raises(ValueError, match="saved with settings"):
        mgf.ModelGuardS(C, eps=0.5).load_state_dict(state)
    bad = dict(state, counts=state["counts"] + 1)
    with pytest.raises(ValueError, match=r"state\['counts'\] must be non-negative and sum to"):
        fresh_guard().load_state_dict(bad)
    swapped = dict(state, centroids=state["centroids"][::-1].copy())
    with pytest.raises(ValueError, match="holds a centroid under a class other than its top-1 class"):
        fresh_guard().load_state_dict(swapped)


def test_snapshot_is_not_pickle_and_is_versioned(tmp_path):
    guard = fresh_guard()
    guard(classifier_like(100, C, seed=5))
    path = tmp_path / "g.npz"
    guard.save(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes())
        assert npz["centroids"].dtype == np.float32
    assert meta["format"] == "modelguard_fast.ModelGuardS" and meta["format_version"] == 2
    assert {"num_classes", "eps", "order", "dtype", "sha256"} <= set(meta)


def corrupt(path, offset_from_end, value=0x55):
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= value
    path.write_bytes(bytes(data))


def test_corrupted_or_foreign_snapshots_are_refused(tmp_path):
    guard = fresh_guard()
    guard(classifier_like(300, C, seed=6))
    path = tmp_path / "g.npz"
    guard.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    flipped = dict(arrays, centroids=arrays["centroids"].copy())
    flipped["centroids"][0, 0] = np.nextafter(flipped["centroids"][0, 0], np.float32(1))
    np.savez(tmp_path / "flipped.npz", **flipped)
    with pytest.raises(mgf.SnapshotError, match="checksum mismatch"):
        mgf.ModelGuardS.load(tmp_path / "flipped.npz")
    meta = json.loads(arrays["meta"].tobytes())
    meta["format_version"] = 99
    newer = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    np.savez(tmp_path / "newer.npz", **newer)
    with pytest.raises(mgf.SnapshotError, match="newer than this modelguard_fast reads"):
        mgf.ModelGuardS.load(tmp_path / "newer.npz")
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(mgf.SnapshotError, match="holds dtype object; snapshots hold only numeric arrays"):
        mgf.ModelGuardS.load(tmp_path / "pickled.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all")
    with pytest.raises(mgf.SnapshotError, match="not a zip archive") as err:
        mgf.ModelGuardS.load(tmp_path / "garbage.npz")
    assert "pickle" not in str(err.value)  # issue 13 item 16: say what is wrong, not how to load it unsafely


def test_failed_save_leaves_the_old_snapshot(tmp_path, monkeypatch):
    guard = fresh_guard()
    guard(classifier_like(100, C, seed=7))
    path = tmp_path / "g.npz"
    guard.save(path)
    original = path.read_bytes()
    guard(classifier_like(100, C, seed=8))

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        guard.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["g.npz"]


def test_journal_restores_codebooks(tmp_path):
    path = tmp_path / "guard.journal"
    stream = classifier_like(3000, C, seed=9)
    guard = fresh_guard(journal=path)
    first = guard(stream[:2000])
    guard.close()
    with pytest.raises(RuntimeError, match="journal was closed"):
        guard(stream[:1])
    reopened = fresh_guard(journal=path)
    np.testing.assert_array_equal(reopened(stream[:2000]), first)
    np.testing.assert_array_equal(reopened(stream[2000:]), fresh_guard()(stream)[2000:])


def test_journal_refuses_other_settings_and_second_opener(tmp_path):
    path = tmp_path / "guard.journal"
    guard = fresh_guard(journal=path)
    guard(classifier_like(100, C, seed=10))
    with pytest.raises(mgf.JournalError, match="already open"):
        fresh_guard(journal=path)
    guard.close()
    with pytest.raises(mgf.JournalError, match="was written with settings"):
        mgf.ModelGuardS(C, eps=0.3, journal=path)


def record_size():
    return 12 + C * 4


def journal_with_records(tmp_path, n_rows=400):
    path = tmp_path / "guard.journal"
    guard = fresh_guard(journal=path)
    out = guard(classifier_like(n_rows, C, seed=11))
    count = guard.num_centroids
    guard.close()
    assert count >= 3
    return path, out, count


def test_torn_last_record_is_discarded(tmp_path):
    path, _, count = journal_with_records(tmp_path)
    with open(path, "ab") as f:
        f.write(b"\x4d\x47\x43\x52\x01\x00")  # a record cut short by a crash
    guard = fresh_guard(journal=path)
    assert guard.num_centroids == count
    guard.close()
    corrupt(path, 3)  # the final full record's checksum: a torn full-length write
    guard = fresh_guard(journal=path)
    assert guard.num_centroids == count - 1
    guard(classifier_like(50, C, seed=12))  # appends cleanly after the cut
    guard.close()
    assert fresh_guard(journal=path).num_centroids >= count - 1


def test_corrupted_journal_is_refused(tmp_path):
    path, _, _ = journal_with_records(tmp_path)
    corrupt(path, 2 * record_size() + 7)  # inside the second-to-last record
    with pytest.raises(mgf.JournalError, match="record .* is corrupted .* followed by more data"):
        fresh_guard(journal=path)
    path.write_bytes(b"XXXX" + path.read_bytes()[4:])
    with pytest.raises(mgf.JournalError, match="bad magic"):
        fresh_guard(journal=path)
    data = bytearray(path.read_bytes())
    data[:8] = journal_format.MAGIC
    data[14] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mgf.JournalError, match="header"):
        fresh_guard(journal=path)


def test_failed_journal_write_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "guard.journal"
    guard = fresh_guard(journal=path)
    guard(classifier_like(100, C, seed=13))
    before = guard.state_dict()

    def failing_pwrite(fd, data, offset):
        raise OSError("no space left on device")

    monkeypatch.setattr(journal_format.os, "pwrite", failing_pwrite)
    with pytest.raises(OSError, match="no space"):
        guard(classifier_like(100, C, seed=14))
    monkeypatch.undo()
    np.testing.assert_array_equal(guard.state_dict()["centroids"], before["centroids"])
    guard.close()
    np.testing.assert_array_equal(fresh_guard(journal=path).state_dict()["centroids"], before["centroids"])


def test_reset_empties_the_journal_and_load_can_start_one(tmp_path):
    path = tmp_path / "guard.journal"
    guard = fresh_guard(journal=path)
    guard(classifier_like(200, C, seed=15))
    guard.save(tmp_path / "snap.npz")
    guard.reset()
    guard.close()
    assert fresh_guard(journal=path).num_centroids == 0
    loaded = mgf.ModelGuardS.load(tmp_path / "snap.npz", journal=tmp_path / "new.journal")
    n = loaded.num_centroids
    loaded.close()
    assert n > 0 and fresh_guard(journal=tmp_path / "new.journal").num_centroids == n


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 399), order=st.sampled_from(["first", "nearest"]))
def test_round_trips_preserve_future_answers(tmp_path_factory, seed, cut, order):
    folder = tmp_path_factory.mktemp("rt")
    stream = classifier_like(400, C, seed=seed)
    reference = mgf.ModelGuardS(C, eps=0.6, order=order)
    expected = reference(stream)
    guard = mgf.ModelGuardS(C, eps=0.6, order=order, journal=folder / "j")
    guard(stream[:cut])
    guard.save(folder / "s.npz")
    guard.close()
    via_snapshot = mgf.ModelGuardS.load(folder / "s.npz")
    via_journal = mgf.ModelGuardS(C, eps=0.6, order=order, journal=folder / "j")
    via_state = mgf.ModelGuardS(C, eps=0.6, order=order)
    via_state.load_state_dict(via_snapshot.state_dict())
    for g in (via_snapshot, via_journal, via_state):
        np.testing.assert_array_equal(g(stream[cut:]), expected[cut:])
    via_journal.close()
