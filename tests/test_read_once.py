"""The pass-through reads its input once (issue 12, fault 9's kind): a caller's array rewritten by another
thread during the call can make the call refuse a row, never return a row that was not checked."""

import threading

import numpy as np
import pytest

import modelguard_fast as mgf
from streams import classifier_like


@pytest.mark.parametrize("C", [10, 37])
def test_no_defense_returns_only_checked_rows_while_the_input_is_rewritten(C):
    # Each row flips between a valid prediction and the same row with one entry NaN. The
    # kernel releases the GIL, so the writer runs while rows are checked and copied: a row
    # checked in its valid state and copied in its NaN state would come back with a NaN.
    good = classifier_like(4096, C, seed=C)
    bad = good.copy()
    bad[:, C // 2] = np.nan
    x = good.copy()
    stop = threading.Event()

    def rewrite():
        while not stop.is_set():
            np.copyto(x, bad)
            np.copyto(x, good)

    writer = threading.Thread(target=rewrite)
    writer.start()
    served = refused = 0
    try:
        for _ in range(300):
            try:
                out = mgf.NoDefense()(x)
            except ValueError as err:  # a row read in its NaN state: refused
                assert "probs must be finite, got nan at row" in str(err) and f"column {C // 2}" in str(err)
                refused += 1
                continue
            served += 1
            assert np.isfinite(out).all(), "a row copied after its check came back unchecked"
            np.testing.assert_array_equal(out, good)  # every row returned is the valid one, read whole
    finally:
        stop.set()
        writer.join()
    assert served + refused == 300
