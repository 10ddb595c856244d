"""Prediction streams used by tests and benchmarks."""

from __future__ import annotations

import numpy as np


def classifier_like(n: int, num_classes: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Softmax of Gaussian logits with one random class boosted, as a trained classifier emits.

    Rows are computed in float64, cast to `dtype`, and a few exact repeats are
    mixed in (real query streams repeat inputs).
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), rng.integers(0, num_classes, n)] += rng.uniform(1.0, 9.0, n)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    repeats = rng.random(n) < 0.05
    src = rng.integers(0, n, n)
    p[repeats] = p[src[repeats]]
    return p.astype(dtype)


def dirichlet(n: int, num_classes: int, seed: int, alpha: float = 0.3, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(num_classes, alpha), size=n).astype(dtype)
