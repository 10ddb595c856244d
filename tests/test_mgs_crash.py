"""A guard killed with SIGKILL at any instant restarts under a codebook that repeats every answer it gave."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import modelguard_fast as mgf
from streams import classifier_like

C, EPS = 16, 0.4
WORKER = Path(__file__).with_name("journal_worker.py")


def run_and_kill(journal, seed, delay):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER.parent), *sys.path]))
    proc = subprocess.Popen([sys.executable, str(WORKER), str(journal), str(seed), str(C), str(EPS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    # Only complete lines were answers handed to a client.
    lines = out.decode().split("\n")[:-1]
    bad = [line for line in lines if len(line.split()) != 3]
    assert not bad, bad[:3]
    return [tuple(line.split()) for line in lines]


def test_sigkill_at_random_points_never_loses_a_given_answer(tmp_path):
    journal = tmp_path / "guard.journal"
    rng = random.Random(1234)
    given = []  # (seed, start, count, digest) of every answer a killed worker returned
    for round_ in range(12):
        seed = 100 + round_ % 4  # some rounds replay streams answered before
        answers = run_and_kill(journal, seed, delay=rng.uniform(0.0, 0.6))
        given += [(seed, int(start), int(count), digest) for start, count, digest in answers]

        restored = mgf.ModelGuardS(C, eps=EPS, journal=journal)
        offline = restored.frozen()  # answers without inserting anything
        restored.close()
        for s in {g[0] for g in given}:
            mine = [g for g in given if g[0] == s]
            end = max(start + count for _, start, count, _ in mine)
            again = offline(classifier_like(200_000, C, seed=s)[:end])
            for _, start, count, digest in mine:
                answer = again[start : start + count]
                assert hashlib.sha256(answer.tobytes()).hexdigest() == digest, (round_, s, start)
    assert len(given) > 100  # the workers really answered between the kills
    counts = np.diff(offline.offsets)
    assert counts.sum() == len(offline.codebook) > 0
