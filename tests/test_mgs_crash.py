"""A guard killed with SIGKILL at any instant restarts under a codebook that repeats every answer it gave.

Covers streaming, reset() and ModelGuardS.load(journal=), and save(): a few
dozen kills in all (see journal_worker.py for how the killed processes work).
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import modelguard_fast as mgf
from streams import classifier_like

C, EPS = 16, 0.4
WORKER = Path(__file__).with_name("journal_worker.py")


class Worker:
    """The fork server of journal_worker.py."""

    def __init__(self, folder):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent), *sys.path]))
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.folder = Path(folder) / "worker"  # one output file per command
        self.folder.mkdir()
        self.runs = 0

    def run_and_kill(self, delay, *command):
        """Runs a command in a child, SIGKILLs it `delay` seconds after it is ready; its completed lines."""
        self.runs += 1
        out = self.folder / f"{self.runs}.out"
        self.proc.stdin.write((" ".join(map(str, [out, *command])) + "\n").encode())
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline().split()[1])
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_bytes().startswith(b"ready\n"):
            assert time.monotonic() < deadline, out.read_bytes() if out.exists() else "no output"
            time.sleep(0.001)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        status = self.proc.stdout.readline().split()
        assert status[0] == b"exit" and os.WIFSIGNALED(int(status[1])), (status, self.proc.stderr.read1())
        # Only complete lines were steps that returned.
        return out.read_bytes().decode().split("\n")[1:-1]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def worker(tmp_path):
    w = Worker(tmp_path)
    yield w
    w.close()


def answers(lines):
    bad = [line for line in lines if len(line.split()) != 3]
    assert not bad, bad[:3]
    return [tuple(line.split()) for line in lines]


def check_reproduced(journal, given):
    """Every answer in `given` ((seed, start, count, digest)) is what the reopened journal answers."""
    restored = mgf.ModelGuardS(C, eps=EPS, journal=journal)
    offline = restored.frozen()  # answers without inserting anything
    restored.close()
    for s in {g[0] for g in given}:
        mine = [g for g in given if g[0] == s]
        end = max(start + count for _, start, count, _ in mine)
        again = offline(classifier_like(200_000, C, seed=s)[:end])
        for _, start, count, digest in mine:
            answer = again[start : start + count]
            assert hashlib.sha256(answer.tobytes()).hexdigest() == digest, (s, start)
    return offline


def test_sigkill_while_streaming_never_loses_a_given_answer(tmp_path, worker):
    journal = tmp_path / "guard.journal"
    rng = random.Random(1234)
    given = []  # (seed, start, count, digest) of every answer a killed worker returned
    for round_ in range(12):
        seed = 100 + round_ % 4  # some rounds replay streams answered before
        lines = worker.run_and_kill(rng.uniform(0.0, 0.4), "stream", journal, seed, C, EPS)
        given += [(seed, int(start), int(count), digest) for start, count, digest in answers(lines)]
        offline = check_reproduced(journal, given)
    assert len(given) > 100  # the workers really answered between the kills
    counts = np.diff(offline.offsets)
    assert counts.sum() == len(offline.codebook) > 0


def test_sigkill_around_reset_leaves_the_old_or_the_new_journal(tmp_path, worker):
    journal = tmp_path / "guard.journal"
    rng = random.Random(99)
    given, resets, in_reset_kills = [], 0, 0
    for round_ in range(12):
        seed = 200 + round_
        lines = worker.run_and_kill(rng.uniform(0.0, 0.3), "reset", journal, seed, C, EPS, 4)
        pending = False  # killed between "resetting" and "reset": either journal may be there
        for line in lines:
            if line == "resetting":
                pending = True
            elif line == "reset":
                pending, given = False, []
                resets += 1
            else:
                given.append((seed, *map(int, line.split()[:2]), line.split()[2]))
        if pending:
            in_reset_kills += 1
            restored = mgf.ModelGuardS(C, eps=EPS, journal=journal)
            empty = restored.num_centroids == 0
            restored.close()
            if empty:
                given = []
        check_reproduced(journal, given)
    assert resets > 10


def test_sigkill_during_load_into_a_journal_leaves_all_or_nothing(tmp_path, worker):
    rng = np.random.default_rng(5)
    rows = classifier_like(40_000, C, seed=7)
    rows = rows[np.argsort(rows.argmax(axis=1), kind="stable")]
    source = mgf.ModelGuardS(C, eps=EPS)
    source.load_state_dict({"format_version": 1, "num_classes": C, "eps": EPS, "order": "first", "dtype": "float32",
                            "centroids": rows, "counts": np.bincount(rows.argmax(axis=1), minlength=C)})
    snapshot = tmp_path / "big.npz"
    source.save(snapshot)
    journal = tmp_path / "loaded.journal"
    began = time.perf_counter()
    mgf.ModelGuardS.load(snapshot, journal=journal).close()
    took = time.perf_counter() - began  # kills spread over twice one load, as measured here
    journal.unlink()
    outcomes = {"absent": 0, "complete": 0}
    limit, kills = 2 * took, 0
    # At least 16 kills; then, until both outcomes were seen (at most 48), the range of delays
    # grows or shrinks: a forked child's load need not take as long as the one measured here.
    while kills < 16 or (not (outcomes["absent"] and outcomes["complete"]) and kills < 48):
        kills += 1
        if kills > 16:
            limit *= 1.5 if not outcomes["complete"] else 1 / 1.5
        lines = worker.run_and_kill(float(rng.uniform(0.0, limit)), "load", snapshot, journal)
        if not journal.exists():
            assert not lines
            outcomes["absent"] += 1
            retry = mgf.ModelGuardS.load(snapshot, journal=journal)  # a retry works
        else:
            outcomes["complete"] += 1
            retry = mgf.ModelGuardS(C, eps=EPS, journal=journal)  # never a partial journal
        np.testing.assert_array_equal(retry.state_dict()["centroids"], rows)
        retry.close()
        journal.unlink()
    assert outcomes["absent"] > 0 and outcomes["complete"] > 0, outcomes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz", "worker"]


def test_sigkill_during_save_leaves_no_temporary_after_the_next_save(tmp_path, worker):
    rows = classifier_like(40_000, C, seed=8)
    rows = rows[np.argsort(rows.argmax(axis=1), kind="stable")]
    source = mgf.ModelGuardS(C, eps=EPS)
    source.load_state_dict({"format_version": 1, "num_classes": C, "eps": EPS, "order": "first", "dtype": "float32",
                            "centroids": rows, "counts": np.bincount(rows.argmax(axis=1), minlength=C)})
    source.save(tmp_path / "src.npz")
    target = tmp_path / "g.npz"
    rng = random.Random(3)
    left = kills = 0
    # At least 6 kills, and more (up to 30) until one lands inside save(): on a loaded
    # machine the child may not have started its first save when the delay runs out.
    while kills < 6 or (not left and kills < 30):
        kills += 1
        worker.run_and_kill(rng.uniform(0.05, 0.3), "save", tmp_path / "src.npz", target)
        left += len([p for p in tmp_path.iterdir() if p.name.startswith(".g.npz.")])
        if target.exists():  # whatever is there is a whole snapshot
            np.testing.assert_array_equal(mgf.ModelGuardS.load(target).state_dict()["centroids"], rows)
    assert left > 0  # the kills did land inside save()
    source.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", "src.npz", "worker"]
