"""Row-by-row numpy reference of the Partial Bayes matcher (modelguard_fast.ops.bayes).

Distances are summed column by column in the table's dtype, the order the
kernels use, so the rows matched are the same bit for bit; means are float64.
"""

from __future__ import annotations

import numpy as np


def l1_rows(r: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sequential L1 distance from r to each row, in the rows' dtype."""
    d = np.zeros(rows.shape[0], dtype=rows.dtype)
    for k in range(rows.shape[1]):
        d = d + np.abs(r[k] - rows[:, k])
    return d


def reference_bayes(received: np.ndarray, clean: np.ndarray, pert: np.ndarray, delta: float,
                    top1_filter: bool) -> np.ndarray:
    dtype = np.promote_types(clean.dtype, pert.dtype)
    clean = clean.astype(dtype)
    pert = pert.astype(dtype)
    received = np.atleast_2d(received)
    clean_top = clean.argmax(axis=1)
    out = np.empty(received.shape, dtype=np.float64)
    for i, r in enumerate(received):
        rows = np.flatnonzero(clean_top == r.argmax()) if top1_filter else np.arange(len(clean))
        if rows.size == 0:
            out[i] = r
            continue
        d = l1_rows(r.astype(dtype), pert[rows])
        tol = max(dtype.type(delta), d.min())
        out[i] = clean[rows[d <= tol]].astype(np.float64).mean(axis=0)
    return out
