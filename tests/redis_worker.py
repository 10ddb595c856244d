"""A replica: serves a deterministic stream of predictions through a guard on a shared RedisStore.

Usage: redis_worker.py URL NAME C EPS SEED POOL ROWS [DUMP]

The rows are ROWS indices drawn (with repeats, overlapping other workers) from
a pool of POOL classifier-like predictions (seed 7, shared by all workers),
served in batches of 1 to 48 rows. Prints "ready", then one line per answered
batch, "<first index position> <rows> <sha256 of the answers>", flushed only
after the guard returned. A batch refused with StoreUnavailable is retried
(after 20 ms) until answered; each refusal prints "unavailable" to stderr.
With DUMP, the answers are also saved there (.npy) at the end. With the
environment variable MGF_WAIT_GO=1 it waits for a line on stdin after "ready"
(so a test can start many replicas at once and set them going one by one). With
MGF_REPEAT=1 it serves its stream again and again (the same answers, later passes throttled)
until killed.
"""

import hashlib
import os
import sys
import time

import numpy as np

import modelguard_fast as mgf
from modelguard_fast.stores import RedisStore
from streams import classifier_like


def plan(C: int, seed: int, pool: int, rows: int):
    """The pool, this worker's row indices into it, and its batch sizes."""
    predictions = classifier_like(pool, C, seed=7)
    rng = np.random.default_rng(seed)
    return predictions, rng.integers(0, pool, rows), rng.integers(1, 49, rows)


def main(url, name, C, eps, seed, pool, rows, dump=None):
    predictions, index, sizes = plan(C, seed, pool, rows)
    guard = mgf.ModelGuardS(C, eps=eps, store=RedisStore(url, name, socket_timeout=1.0, connect_timeout=1.0))
    answers = np.empty((rows, C), dtype=np.float32)
    print("ready", flush=True)
    if os.environ.get("MGF_WAIT_GO") == "1":
        sys.stdin.readline()
    repeat = os.environ.get("MGF_REPEAT") == "1"
    pause = 0.0
    while True:
        serve(guard, predictions, index, sizes, rows, answers, pause)
        if not repeat:
            break
        pause = 0.002  # later passes (all hits) are throttled, so the test is not flooded with lines
    if dump:
        np.save(dump, answers)


def serve(guard, predictions, index, sizes, rows, answers, pause):
    """One pass over the worker's stream, sleeping `pause` seconds after each batch."""
    start = 0
    for size in sizes:
        if start >= rows:
            break
        batch = predictions[index[start : start + size]]
        while True:
            try:
                out = guard(batch)
                break
            except mgf.StoreUnavailable:
                sys.stderr.write("unavailable\n")
                sys.stderr.flush()
                time.sleep(0.02)
        answers[start : start + len(out)] = out
        sys.stdout.write(f"{start} {len(out)} {hashlib.sha256(out.tobytes()).hexdigest()}\n")
        sys.stdout.flush()
        start += len(out)
        if pause:
            time.sleep(pause)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), float(a[3]), int(a[4]), int(a[5]), int(a[6]), a[7] if len(a) > 7 else None)
