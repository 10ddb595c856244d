"""Prediction rows for the ModelGuard-W tests (no HiGHS needed, so GPU-only runs can import it)."""

from __future__ import annotations

import numpy as np


def sweep_rows(C: int, count: int, seed: int) -> np.ndarray:
    """Rows of every kind the issue lists: Dirichlet with concentrations from
    0.01 to 10, exact zeros, ties at the top and elsewhere, one-hot and uniform rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        y = rng.dirichlet(np.full(C, 10 ** rng.uniform(-2, 1)))
        kind = i % 6
        if kind == 1:  # exact zeros
            y[rng.random(C) < 0.4] = 0.0
            if y.sum() == 0:
                y[rng.integers(C)] = 1.0
        elif kind == 2:  # a tie at the top
            tied = rng.choice(C, size=min(C, int(rng.integers(2, 5))), replace=False)
            y[tied] = y.max()
        elif kind == 3:  # ties elsewhere (and sometimes at the top)
            y = np.round(y, 2 if C <= 10 else 3)
            if y.sum() == 0:
                y[rng.integers(C)] = 1.0
        elif kind == 4:
            y = np.zeros(C)
            y[rng.integers(C)] = 1.0
        elif kind == 5 and i % 12 == 5:
            y = np.full(C, 1.0)
        rows.append(y / y.sum())
    return np.asarray(rows)
