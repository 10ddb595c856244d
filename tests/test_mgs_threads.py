"""Many serving threads on one guard: no torn codebook, every answer one a sequential run could give."""

import threading

import numpy as np

import modelguard_fast as mgf
from reference_mgs import l1_distances
from streams import classifier_like

C, EPS = 10, 0.5


def test_concurrent_calls_behave_like_some_sequential_order():
    guard = mgf.ModelGuardS(C, eps=EPS)
    streams = [classifier_like(3000, C, seed=s) for s in range(6)]
    results = [None] * len(streams)
    errors = []

    def serve(i):
        try:
            rng = np.random.default_rng(i)
            out, start = [], 0
            while start < len(streams[i]):
                n = int(rng.integers(1, 300))
                out.append(guard(streams[i][start : start + n]))
                start += n
            results[i] = np.concatenate(out)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    books = [guard.centroids(c) for c in range(C)]
    for book in books:  # each centroid was appended only when no earlier one was within eps
        for j in range(1, len(book)):
            assert (l1_distances(book[:j], book[j]) > np.float32(EPS)).all()
    assert guard.num_queries == sum(len(s) for s in streams)
    for stream, answers in zip(streams, results):
        for y, answer in zip(stream, answers):
            book = books[int(np.argmax(y))]
            admissible = np.flatnonzero(l1_distances(book, y) <= np.float32(EPS))
            # Codebooks only grow at the end, so the first admissible centroid
            # at answer time is still the first one now.
            np.testing.assert_array_equal(answer, book[admissible[0]])
