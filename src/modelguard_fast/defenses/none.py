"""No defense: the clean predictions, validated and copied."""

from __future__ import annotations

from typing import Any

from .._validation import DEFAULT_SUM_TOL
from . import _torch_io as io
from .base import Defense


class NoDefense(Defense):
    """Returns a copy of the predictions, after the checks every defense makes.

    Args:
        num_classes: number of columns C to insist on (None: any).
        sum_tol: rows must sum to 1 within this absolute tolerance.
    """

    name = "None"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = False

    def __init__(self, num_classes: int | None = None, sum_tol: float = DEFAULT_SUM_TOL):
        self.num_classes = io.optional_classes(num_classes)
        self.sum_tol = io.sum_tolerance(sum_tol)

    def __repr__(self) -> str:
        return f"NoDefense(num_classes={self.num_classes})"

    def __call__(self, probs: Any) -> Any:
        batch, y = io.tensor_batch(probs, "probs", self.num_classes)
        io.check_probabilities(y, "probs", self.sum_tol)
        return io.restore(y.clone(), batch)
