"""DefenseStats stays exact without a lock on the serving path: many threads recording at once, readers
meanwhile, threads that end, resets, and a fork while another thread reads."""

import os
import select
import threading

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.defense import DefenseStats


def run_threads(target, count):
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_concurrent_records_are_exact_and_each_is_seen_whole():
    stats = DefenseStats()
    records, stop, torn = 3000, threading.Event(), []

    def reader():
        while not stop.is_set():
            s = stats.snapshot()
            # every record adds 2 rows, both measured, distortion 1.0 each, 1 infeasible: a reader
            # sees a record whole or not at all
            if not (s["queries"] == s["distortion_rows"] == 2 * s["infeasible"] == s["distortion_sum"]):
                torn.append(s)

    def writer(i):
        for k in range(records):
            stats.record(2, infeasible=1, distortion_sum=2.0, distortion_max=float(i * records + k))

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        run_threads(writer, 6)
    finally:
        stop.set()
        watcher.join()
    assert not torn, torn[:3]
    assert stats.snapshot() == {"queries": 2 * 6 * records, "infeasible": 6 * records,
                                "distortion_rows": 2 * 6 * records, "distortion_sum": 2.0 * 6 * records,
                                "distortion_max": float(6 * records - 1)}
    assert stats.mean_distortion == 1.0


def test_unmeasured_records_count_rows_only():
    stats = DefenseStats()
    stats.record(5)
    stats.record(3, distortion_sum=0.75, distortion_max=0.5)
    assert (stats.queries, stats.distortion_rows, stats.distortion_sum, stats.distortion_max) == (8, 3, 0.75, 0.5)
    assert stats.mean_distortion == 0.25


def test_threads_that_ended_are_folded_and_counts_stay_exact():
    stats = DefenseStats()
    for wave in range(4):  # one new thread per request, as some servers do
        run_threads(lambda i: stats.record(1, distortion_sum=0.5, distortion_max=0.5), 50)
        assert stats.queries == 50 * (wave + 1)
    assert len(stats._tally.cells) <= 64  # the ended threads' cells did not pile up
    assert stats.snapshot()["distortion_sum"] == 0.5 * 200


def test_reset_and_load_start_afresh_for_threads_that_recorded_before():
    stats = DefenseStats()
    stats.record(4, distortion_sum=1.0, distortion_max=1.0)
    worker_done = threading.Event()
    go = threading.Event()

    def worker():
        stats.record(10)
        go.wait()
        stats.record(1)
        worker_done.set()

    t = threading.Thread(target=worker)
    t.start()
    while stats.queries != 14:
        pass
    stats.reset()
    assert stats.snapshot() == {"queries": 0, "infeasible": 0, "distortion_rows": 0, "distortion_sum": 0.0,
                                "distortion_max": 0.0}
    stats.record(2)
    go.set()
    t.join()
    assert worker_done.is_set() and stats.queries == 3  # after the reset: 2 here, 1 in the worker
    stats.load({"queries": 7, "infeasible": 1, "distortion_rows": 7, "distortion_sum": 3.5, "distortion_max": 0.5})
    stats.record(1, distortion_sum=1.0, distortion_max=1.0)
    assert stats.snapshot() == {"queries": 8, "infeasible": 1, "distortion_rows": 8, "distortion_sum": 4.5,
                                "distortion_max": 1.0}


def test_a_guard_served_from_many_threads_counts_every_row_whole():
    # Hits are counted by the kernel (stats.kernel_tally), misses and batches through record(): readers
    # meanwhile see every call whole, and the totals are the rows and distortions answered.
    guard = mgf.ModelGuardS(4, eps=0.3)
    rows = np.random.default_rng(3).dirichlet(np.ones(4), size=64).astype(np.float32)
    guard(rows[:32])  # the codebooks of these rows: calls on them are hits, on rows[32:] some are misses
    before = guard.stats.snapshot()
    stop, torn, answers = threading.Event(), [], [[] for _ in range(5)]

    def reader():
        while not stop.is_set():
            s = guard.stats.snapshot()
            if s["queries"] != s["distortion_rows"]:
                torn.append(s)

    def serve(i):
        for k in range(200):
            x = rows[(i + k) % 64] if k % 50 else rows[k % 7: k % 7 + 9]
            answers[i].append((x, guard(x)))

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        run_threads(serve, 5)
    finally:
        stop.set()
        watcher.join()
    assert not torn, torn[:3]
    after = guard.stats.snapshot()
    served = sum(len(np.atleast_2d(x)) for calls in answers for x, _ in calls)
    assert after["queries"] - before["queries"] == after["distortion_rows"] - before["distortion_rows"] == served
    l1 = [np.abs(np.atleast_2d(out).astype(np.float64) - np.atleast_2d(x)).sum(axis=1)
          for calls in answers for x, out in calls]
    assert after["distortion_sum"] - before["distortion_sum"] == pytest.approx(np.concatenate(l1).sum(), rel=1e-5)
    assert after["distortion_max"] == pytest.approx(max(before["distortion_max"], np.concatenate(l1).max()), rel=1e-5)
    guard.reset_stats()
    guard(rows[3])
    assert guard.stats.snapshot()["queries"] == 1


def test_a_fork_while_another_thread_reads_leaves_the_child_usable_with_the_counts():
    stats = DefenseStats()
    stats.record(5, distortion_sum=1.0, distortion_max=0.5)
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            stats.snapshot()  # holds the tally's lock most of the time

    t = threading.Thread(target=reader)
    t.start()
    results = []
    try:
        for _ in range(10):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    stats.record(1)
                    os.write(w, str(stats.queries).encode())
                finally:
                    os._exit(0)
            os.close(w)
            ready, _, _ = select.select([r], [], [], 20)
            results.append(os.read(r, 64).decode() if ready else "hung")
            if not ready:
                os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(r)
    finally:
        stop.set()
        t.join()
    assert results == ["6"] * 10
    assert stats.queries == 5  # the children's records stay in the children
