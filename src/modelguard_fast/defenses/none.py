"""No defense: the clean predictions, validated and copied."""

from __future__ import annotations

from typing import Any

from .. import _arrays, params
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL


class NoDefense(Defense):
    """Returns a copy of the predictions, after the checks every defense makes.

    It costs a checked copy: the C++ row check and the copy in one pass (on
    CUDA tensors, the same check in a CUDA kernel, then a copy), in the
    input's own type (float16 / bfloat16 input is answered in float32).

    Args:
        num_classes: number of columns C to insist on (None: any).
        sum_tol: rows must sum to 1 within this absolute tolerance.
    """

    name = "None"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = False

    def __init__(self, num_classes: int | None = None, sum_tol: float = DEFAULT_SUM_TOL):
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.sum_tol = params.sum_tol(sum_tol)

    def __repr__(self) -> str:
        return f"NoDefense(num_classes={self.num_classes})"

    def __call__(self, probs: Any) -> Any:
        batch = _arrays.checked_copy(probs, "probs", self.num_classes, self.sum_tol)
        self.stats.record(batch.rows)
        return _arrays.restore(batch.data, batch)
