"""Serves deterministic work through journaled guards, in forked children that test_mgs_crash.py kills.

The server imports modelguard_fast once; each command is run by a forked child
(killing it is a real SIGKILL of the process holding the journal; forking
spares the import for each of the few dozen kills). Protocol: the test writes
"<out file> <mode> <args...>" on stdin; the server answers "pid <pid>" and,
once the child is gone, "exit <status>". The child writes "ready", then one
line per completed step to <out file>, each with a single write() made only
after the step returned (after the journal or file was made durable):

    stream <journal> <seed> <C> <eps>           "<first row> <rows> <sha256 of the answers>"
    reset  <journal> <seed> <C> <eps> <every>   the same, with "resetting" and "reset" around
                                                a reset() every <every> batches
    load   <snapshot> <journal>                 "loaded <centroids>" after ModelGuardS.load(journal=)
    save   <snapshot> <target>                  "saved" after each save() of the snapshot's guard to target

A child that finished its work sleeps until it is killed.
"""

import hashlib
import os
import sys
import time

import numpy as np

import modelguard_fast as mgf
from streams import classifier_like


def say(out: int, line: str) -> None:
    os.write(out, (line + "\n").encode())


def stream(out, journal, seed, num_classes, eps, every=0):
    guard = mgf.ModelGuardS(int(num_classes), eps=float(eps), journal=journal)
    data = classifier_like(200_000, int(num_classes), seed=int(seed))
    sizes = np.random.default_rng(int(seed)).integers(1, 48, size=len(data))
    say(out, "ready")
    start = 0
    for i, size in enumerate(sizes):
        if start >= len(data):
            break
        if every and i and i % int(every) == 0:
            say(out, "resetting")
            guard.reset()
            say(out, "reset")
        answer = guard(data[start : start + size])
        say(out, f"{start} {len(answer)} {hashlib.sha256(answer.tobytes()).hexdigest()}")
        start += size


def load(out, snapshot, journal):
    say(out, "ready")
    guard = mgf.ModelGuardS.load(snapshot, journal=journal)
    say(out, f"loaded {guard.num_centroids}")


def save(out, snapshot, target):
    guard = mgf.ModelGuardS.load(snapshot)
    say(out, "ready")
    while True:
        guard.save(target)
        say(out, "saved")


MODES = {"stream": stream, "reset": stream, "load": load, "save": save}


def main() -> None:
    for command in sys.stdin:
        out_path, mode, *args = command.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                MODES[mode](out, *args)
                while True:
                    time.sleep(1)
            except BaseException as err:
                sys.stderr.write(f"worker {mode} failed: {err!r}\n")
                code = 1
            finally:
                os._exit(code)
        sys.stdout.write(f"pid {pid}\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"exit {status}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
