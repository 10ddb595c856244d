"""Top-1: answer with the one-hot vector of the predicted class."""

from __future__ import annotations

from typing import Any

import torch

from .. import params
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from . import _torch_io as io


class Top1(Defense):
    """One-hot of each row's argmax (the first index of the maximum on ties).

    The public code takes torch.topk(y, 1), whose choice among tied maxima is
    unspecified; here ties go to the lowest index, as argmax and ModelGuard-S do.

    Args:
        num_classes: number of columns C to insist on (None: any).
        logits: the inputs are logits (any finite values) rather than
            probabilities; the answer is the same one-hot vector.
        sum_tol: probability rows must sum to 1 within this absolute tolerance.
    """

    name = "Top-1"
    preserves_top1 = True
    deterministic = True
    discrete_outputs = True

    def __init__(self, num_classes: int | None = None, logits: bool = False, sum_tol: float = DEFAULT_SUM_TOL):
        self.logits = params.flag(logits, "logits")
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.sum_tol = params.sum_tol(sum_tol)

    def __repr__(self) -> str:
        return f"Top1(num_classes={self.num_classes}, logits={self.logits})"

    def __call__(self, probs: Any) -> Any:
        """One-hot answers for `probs` (or logits, with logits=True)."""
        if self.logits:
            batch, y = io.logits_batch(probs, "logits", self.num_classes)
            top = torch.argmax(y, dim=1)
        else:
            batch, y, top = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol)
        out = torch.zeros_like(y)
        out.scatter_(1, top[:, None], 1.0)
        self.stats.record(batch.rows)
        return io.restore(out, batch)
