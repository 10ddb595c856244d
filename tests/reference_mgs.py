"""A plain numpy reference of ModelGuard-S (Algorithm 1), one row at a time.

Distances use the summation order documented in csrc/include/modelguard_fast/l1.h:
column k goes to lane k % 8, lanes sum left to right, and the lanes combine as
((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), all in the input dtype.
"""

from __future__ import annotations

import numpy as np

LANES = 8


def l1_distances(codebook: np.ndarray, y: np.ndarray) -> np.ndarray:
    """L1 distance from y to every row of codebook, in the kernels' summation order."""
    dtype = y.dtype
    n, C = codebook.shape
    diff = np.abs(codebook - y)
    width = -(-C // LANES) * LANES
    padded = np.zeros((n, width), dtype=dtype)
    padded[:, :C] = diff
    lanes = np.zeros((n, LANES), dtype=dtype)
    for k in range(0, width, LANES):
        lanes = lanes + padded[:, k : k + LANES]
    return ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + (
        (lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7])
    )


class ReferenceModelGuardS:
    def __init__(self, num_classes: int, eps: float, order: str = "first", dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.eps = self.dtype.type(eps)
        self.order = order
        self.books = [np.empty((0, num_classes), dtype=self.dtype) for _ in range(num_classes)]

    def answer(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=self.dtype)
        t = int(np.argmax(y))
        book = self.books[t]
        d = l1_distances(book, y)
        admissible = np.flatnonzero(d <= self.eps)
        if admissible.size == 0:
            self.books[t] = np.vstack([book, y[None]])
            return y.copy()
        if self.order == "first":
            j = admissible[0]
        else:
            j = admissible[np.argmin(d[admissible])]
        return book[j].copy()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.answer(y) for y in rows])

    def offline(self, y: np.ndarray) -> np.ndarray:
        """The attacker's map: first within eps, else nearest; the row itself if the class is empty."""
        y = np.asarray(y, dtype=self.dtype)
        book = self.books[int(np.argmax(y))]
        if len(book) == 0:
            return y.copy()
        d = l1_distances(book, y)
        admissible = np.flatnonzero(d <= self.eps)
        return book[admissible[0] if admissible.size else int(np.argmin(d))].copy()
