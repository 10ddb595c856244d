"""Replica processes on one RedisStore: one global order, SIGKILLed replicas, a SIGKILLed Redis server.

Every answer a replica printed (only after its guard returned) is checked
against the numpy reference of Algorithm 1 (tests/reference_mgs.py) fed with
the store's final append log in log order: each logged centroid must be a
miss when replayed, and each given answer must be the first centroid of its
class within eps. Since codebooks only grow, that is the answer of one
global sequential order of all calls.
"""

import hashlib
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.stores import RedisStore
from redis_worker import plan
from reference_mgs import ReferenceModelGuardS, l1_distances

WORKER = Path(__file__).with_name("redis_worker.py")
POOL = 1500  # small: replicas send the same predictions often
BIG_POOL = 40000  # large: misses keep coming all along the stream


class Replica:
    """A redis_worker.py process; its printed lines are gathered by a thread."""

    def __init__(self, server, name, C, eps, seed, rows, dump=None, wait_go=False, pool=POOL, repeat=False):
        self.C, self.eps, self.seed, self.rows, self.pool = C, eps, seed, rows, pool
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent), *sys.path]),
                   MGF_WAIT_GO="1" if wait_go else "0", MGF_REPEAT="1" if repeat else "0")
        args = [sys.executable, str(WORKER), server.url, name, str(C), str(eps), str(seed), str(pool), str(rows)]
        self.proc = subprocess.Popen(args + ([str(dump)] if dump else []), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.PIPE if wait_go else None, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.answers: list[tuple[int, int, str]] = []
        self.errors = b""
        self.ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr = threading.Thread(target=self._read_errors, daemon=True)
        self._stderr.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_errors(self):
        self.errors = self.proc.stderr.read()

    def wait_ready(self, timeout=60):
        line = self.lines.get(timeout=timeout)
        assert line == b"ready\n", (line, self.proc.wait(), self.errors.decode())

    def drain(self, idle=None, at_most=None):
        """Collects answered lines until the replica's output ends; with `idle`, returns once no line
        came for `idle` seconds; with `at_most`, returns after that many seconds."""
        deadline = None if at_most is None else time.monotonic() + at_most
        while not self.ended:
            wait = idle if idle is not None else 120
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            try:
                line = self.lines.get(timeout=wait)
            except queue.Empty:
                if idle is not None or deadline is not None:
                    return
                raise
            if line is None:
                self.ended = True  # the output ended: later drains return at once
                return
            if line.endswith(b"\n") and line != b"ready\n":  # a line cut by a kill was never an answer
                start, count, digest = line.split()
                self.answers.append((int(start), int(count), digest.decode()))

    def finish(self, timeout=300):
        rc = self.proc.wait(timeout=timeout)
        self._reader.join()
        self._stderr.join()
        self.drain()
        assert rc == 0, self.errors.decode()[-3000:]

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join()
        self._stderr.join()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn():
    """Starts Replica processes; any still running at the end of the test is killed."""
    started = []

    def start(*args, **kwargs):
        started.append(Replica(*args, **kwargs))
        return started[-1]

    yield start
    for r in started:
        r.close()


def replayed_log(server, name, C, eps) -> ReferenceModelGuardS:
    """The reference after replaying the store's final log in its global order (the `log` key: the class
    of every centroid in append order), checking every logged centroid was a miss."""
    guard = mgf.ModelGuardS(C, eps=eps, store=RedisStore(server.url, name))
    client = server.client()
    log = [int(c) for c in client.lrange(f"mgf:{{{name}}}:log", 0, -1)]
    client.close()
    books = [guard.centroids(cls) for cls in range(C)]
    assert np.bincount(log, minlength=C).tolist() == [len(b) for b in books]  # the log names every centroid once
    reference = ReferenceModelGuardS(C, eps)
    for position, cls in enumerate(log):
        before = len(reference.books[cls])
        row = books[cls][before]
        assert reference.answer(row).tobytes() == row.tobytes() and len(reference.books[cls]) == before + 1, \
            f"log entry {position} (class {cls}, centroid {before}) was admissible under an earlier one"
    guard.close()
    return reference


def expected(reference, predictions) -> np.ndarray:
    """The first centroid within eps of each row; every row given an answer must have one."""
    out = np.empty_like(predictions)
    for i, y in enumerate(predictions):
        book = reference.books[int(np.argmax(y))]
        admissible = np.flatnonzero(l1_distances(book, y) <= reference.eps) if len(book) else []
        assert len(admissible), f"pool row {i} has no centroid within eps in the final log"
        out[i] = book[admissible[0]]
    return out


def check_given(replicas, reference, C) -> int:
    """Asserts every printed answer equals the reference's; returns how many batches were checked."""
    plans = [plan(C, r.seed, r.pool, r.rows) for r in replicas]
    predictions = plans[0][0]
    answered = [np.concatenate([index[start : start + count] for start, count, _ in r.answers] or [[]])
                for r, (_, index, _) in zip(replicas, plans)]
    used = np.unique(np.concatenate(answered)).astype(np.int64)
    want = np.zeros_like(predictions)
    want[used] = expected(reference, predictions[used])
    checked = 0
    for r, (_, index, _) in zip(replicas, plans):
        for start, count, digest in r.answers:
            assert hashlib.sha256(want[index[start : start + count]].tobytes()).hexdigest() == digest, \
                (r.seed, start, count)
            checked += 1
    return checked


def test_four_replicas_per_store_answer_in_one_global_order(redis_server, spawn, tmp_path):
    # Two codebooks (C = 10 and C = 100), four replica processes each, all running at once.
    cases = {"c10": (10, 0.5, 1500), "c100": (100, 1.0, 1000)}
    replicas = {name: [spawn(redis_server, name, C, eps, seed, rows, dump=tmp_path / f"{name}-{seed}.npy")
                       for seed in range(4)] for name, (C, eps, rows) in cases.items()}
    for group in replicas.values():
        for r in group:
            r.finish()
    for name, (C, eps, rows) in cases.items():
        reference = replayed_log(redis_server, name, C, eps)
        group = replicas[name]
        assert check_given(group, reference, C) == sum(len(r.answers) for r in group)
        # The same prediction sent to different processes got identical bytes.
        by_row: dict[int, bytes] = {}
        for r in group:
            _, index, _ = plan(C, r.seed, r.pool, r.rows)
            for i, answer in zip(index, np.load(tmp_path / f"{name}-{r.seed}.npy")):
                if by_row.setdefault(int(i), answer.tobytes()) != answer.tobytes():
                    raise AssertionError(f"{name}: pool row {i} got different answers from different replicas")
        assert len(by_row) < 4 * rows  # rows overlapped across processes


def wait_stalled(replica, server_client, timeout=10.0):
    """Returns once the replica printed nothing for 0.5 s (it is blocked inside a store call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = len(replica.answers)
        replica.drain(idle=0.5, at_most=2.0)
        if len(replica.answers) == before:
            return
    server_client.execute_command("CLIENT", "UNPAUSE")
    pytest.fail("the replica kept answering while writes were paused")


def test_sigkilled_replicas_never_change_a_given_answer(redis_server, spawn):
    C, eps = 10, 0.3
    rng = random.Random(11)
    client = redis_server.client()
    # One replica runs throughout, so the killed ones meet conflicts; the others start at once and
    # are set going one by one.
    steady = spawn(redis_server, "model", C, eps, seed=100, rows=12000, pool=BIG_POOL)
    doomed = [spawn(redis_server, "model", C, eps, seed=i % 5, rows=20000, wait_go=True, pool=BIG_POOL)
              for i in range(7)]
    for r in [steady, *doomed]:
        r.wait_ready()
    for i, r in enumerate(doomed):
        r.go()
        if i < 4:  # anywhere in the stream
            time.sleep(rng.uniform(0.0, 0.6))
            r.kill()
        else:  # inside the compare-and-append: writes paused, so the replica blocks in the script call
            r.drain(at_most=0.3)  # what it answered so far (a fast replica may never be quiet for long)
            client.execute_command("CLIENT", "PAUSE", 30000, "WRITE")
            wait_stalled(r, client)
            if i % 2 == 0:  # the append runs, but its reply never reaches the replica
                r.kill(signal.SIGSTOP)
                client.execute_command("CLIENT", "UNPAUSE")
                time.sleep(0.3)
                r.kill()
            else:  # the replica dies before the append runs
                r.kill()
                time.sleep(0.1)
                client.execute_command("CLIENT", "UNPAUSE")
        r.proc.wait()
        r._reader.join()
        r.drain()
        # The store stays valid (a new guard validates every centroid), and the kill changed no given answer.
        restarted = mgf.ModelGuardS(C, eps=eps, store=RedisStore(redis_server.url, "model"))
        offline = restarted.frozen()  # first centroid within eps, without appending
        restarted.close()
        predictions, index, _ = plan(C, r.seed, r.pool, r.rows)
        for start, count, digest in r.answers:
            answer = offline(predictions[index[start : start + count]])
            assert hashlib.sha256(answer.tobytes()).hexdigest() == digest, (i, start, count)
    steady.finish()
    reference = replayed_log(redis_server, "model", C, eps)
    assert check_given(doomed + [steady], reference, C) > 300
    assert sum(bool(r.answers) for r in doomed) >= 5  # most killed replicas had answered something
    client.close()


def test_redis_server_sigkilled_and_restarted_on_its_aof(redis_server, spawn):
    C, eps = 10, 0.3
    # Endless streams (repeated until killed): the replicas serve throughout and are stopped at the end.
    replicas = [spawn(redis_server, "model", C, eps, seed=seed, rows=400_000, pool=BIG_POOL, wait_go=True,
                      repeat=True) for seed in range(3)]
    for r in replicas:
        r.wait_ready()
    for r in replicas:
        r.go()
    client = redis_server.client()
    sizes = []
    for downtime in (0.2, 1.0, 2.5):  # shorter than the client's retries, and longer
        time.sleep(0.4)
        sizes.append(sum(client.llen(f"mgf:{{model}}:class:{c}") for c in range(C)))
        client.close()
        redis_server.kill(signal.SIGKILL)
        time.sleep(downtime)
        for r in replicas:
            r.drain(idle=0.01, at_most=0.5)  # bounded: replicas whose rows all hit keep answering
        answered = [len(r.answers) for r in replicas]
        redis_server.start()
        client = redis_server.client()
    time.sleep(0.5)
    sizes.append(sum(client.llen(f"mgf:{{model}}:class:{c}") for c in range(C)))
    client.close()
    for r in replicas:
        assert r.proc.poll() is None  # still streaming: every kill was mid-stream
        r.kill()
        r.proc.wait()
        r._reader.join()
        r._stderr.join()
        r.drain()
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # the log never shrank, and grew after restarts
    assert all(len(r.answers) > n for r, n in zip(replicas, answered))  # served after the last restart
    assert any(b"unavailable" in r.errors for r in replicas)  # the long outage refused misses meanwhile
    reference = replayed_log(redis_server, "model", C, eps)
    assert check_given(replicas, reference, C) == sum(len(r.answers) for r in replicas)
