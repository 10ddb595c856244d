"""Serves a deterministic query stream through a journaled guard, printing each answer.

Used by test_mgs_crash.py, which kills this process at random points. Each
printed line is "<first row> <rows> <sha256 of the answers>" and is flushed
only after the guard returned, i.e. after the journal was made durable.
"""

import hashlib
import sys

import numpy as np

import modelguard_fast as mgf
from streams import classifier_like


def main(journal: str, seed: int, num_classes: int, eps: float) -> None:
    guard = mgf.ModelGuardS(num_classes, eps=eps, journal=journal)
    stream = classifier_like(200_000, num_classes, seed=seed)
    sizes = np.random.default_rng(seed).integers(1, 48, size=len(stream))
    print("ready", flush=True)
    start = 0
    for size in sizes:
        if start >= len(stream):
            break
        out = guard(stream[start : start + size])
        sys.stdout.write(f"{start} {len(out)} {hashlib.sha256(out.tobytes()).hexdigest()}\n")
        sys.stdout.flush()
        start += size


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
