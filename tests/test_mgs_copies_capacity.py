"""Copies of guards, capacity limits, fork with calls in flight, and load into a journal."""

import copy
import logging
import os
import pickle
import select
import threading
import time

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.persistence import atomic
from streams import classifier_like

C = 10


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_in_memory_guards_copy_through_their_state(how):
    dup = {"pickle": lambda g: pickle.loads(pickle.dumps(g)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how]
    stream = classifier_like(1000, C, seed=41)
    g = mgf.ModelGuardS(C, eps=0.6, order="nearest", dtype="float64", sum_tol=0.01, max_centroids=400)
    g(stream[:500])
    twin = dup(g)
    assert (twin.eps, twin.order, twin.dtype, twin.sum_tol, twin.max_centroids) == (0.6, "nearest", np.float64, 0.01, 400)
    assert (twin.num_queries, twin.mean_distortion) == (g.num_queries, g.mean_distortion)
    np.testing.assert_array_equal(twin(stream[500:]), g(stream[500:]))
    twin(classifier_like(300, C, seed=42))  # independent afterwards
    assert twin.num_centroids > g.num_centroids
    w = mgf.ModelGuardW(eps=0.5, margin=0.01)
    w(stream[:10])
    w2 = dup(w)
    assert (w2.eps, w2.margin, w2.num_queries) == (0.5, 0.01, 10)
    np.testing.assert_array_equal(w2(stream[10:20]), w(stream[10:20]))


def test_a_journal_bound_guard_refuses_to_be_copied(tmp_path):
    g = mgf.ModelGuardS(C, eps=0.6, journal=tmp_path / "j")
    for dup in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match="bound to journal .* cannot be copied or pickled: two guards"):
            dup(g)
    g.close()


def test_max_centroids_refuses_a_call_and_changes_nothing(tmp_path, caplog):
    path = tmp_path / "j"
    g = mgf.ModelGuardS(C, eps=0.3, journal=path, max_centroids=5)
    assert g.centroid_warning == 4
    stream = classifier_like(3000, C, seed=43)
    served = 0
    with caplog.at_level(logging.WARNING, logger="modelguard_fast.defenses.modelguard_s"):
        while True:
            before = g.state_dict()
            queries = g.num_queries
            try:
                g(stream[served : served + 7])
            except mgf.CapacityError as err:
                assert "holds max_centroids=5 centroids; this call would add another" in str(err)
                break
            served += 7
    assert "codebook holds 4 centroids (warning at 4, max_centroids=5)" in caplog.text
    after = g.state_dict()
    np.testing.assert_array_equal(after["centroids"], before["centroids"])
    assert g.num_queries == queries and g.centroid_counts.max() <= 5
    # Rows the codebooks already answer are still served; the refused rows stay refused.
    np.testing.assert_array_equal(g(stream[:served]), mgf.ModelGuardS(C, eps=0.3)(stream[:served]))
    with pytest.raises(mgf.CapacityError):
        g(stream[served : served + 7])
    g.close()
    reopened = mgf.ModelGuardS(C, eps=0.3, journal=path, max_centroids=5)
    np.testing.assert_array_equal(reopened.state_dict()["centroids"], after["centroids"])
    reopened.close()
    with pytest.raises(ValueError, match="holds 5 centroids in one class, more than max_centroids=3"):
        mgf.ModelGuardS(C, eps=0.3, journal=path, max_centroids=3)
    with pytest.raises(ValueError, match="holds 5 centroids in one class, more than max_centroids=3"):
        mgf.ModelGuardS(C, eps=0.3, max_centroids=3).load_state_dict(after)
    with pytest.raises(ValueError, match="max_centroids must be a positive integer"):
        mgf.ModelGuardS(C, eps=0.3, max_centroids=0)


def test_fork_while_another_thread_is_inside_a_call_never_deadlocks():
    g = mgf.ModelGuardS(C, eps=0.2)
    stream = classifier_like(200_000, C, seed=44)
    stop = threading.Event()

    def serve():
        start = 0
        while not stop.is_set():
            g(stream[start : start + 5000])
            start = (start + 5000) % 195_000

    t = threading.Thread(target=serve)
    t.start()
    hung = 0
    try:
        for _ in range(20):
            time.sleep(0.01)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    g(stream[:3])  # the child's first call
                    os.write(w, b"k")
                finally:
                    os._exit(0)
            os.close(w)
            ready, _, _ = select.select([r], [], [], 20)
            if not ready:
                hung += 1
                os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(r)
    finally:
        stop.set()
        t.join()
    assert hung == 0


def test_load_into_a_journal_is_all_or_nothing(tmp_path, monkeypatch):
    g = mgf.ModelGuardS(C, eps=0.5)
    g(classifier_like(500, C, seed=45))
    g.save(tmp_path / "s.npz")
    journal = tmp_path / "new.journal"

    def killed(*args):
        raise KeyboardInterrupt  # stands for a kill just before the journal would appear

    monkeypatch.setattr(atomic.os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        mgf.ModelGuardS.load(tmp_path / "s.npz", journal=journal)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]
    loaded = mgf.ModelGuardS.load(tmp_path / "s.npz", journal=journal)  # the retry works
    loaded.close()
    with pytest.raises(mgf.JournalError, match="already exists"):
        mgf.ModelGuardS.load(tmp_path / "s.npz", journal=journal)
    reopened = mgf.ModelGuardS(C, eps=0.5, journal=journal)
    np.testing.assert_array_equal(reopened.state_dict()["centroids"], g.state_dict()["centroids"])
    reopened.close()
