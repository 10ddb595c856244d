"""Rounding: keep a fixed number of decimals of every entry."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from .. import params
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from . import _torch_io as io


class Rounding(Defense):
    """Rounds every entry to `decimals` decimals, half to even (as numpy's round).

    The paper's Rounding defense keeps one decimal and, like its public code,
    does not renormalise, so answers need not sum to 1 (0.12, 0.31, 0.26, 0.31
    becomes 0.1, 0.3, 0.3, 0.3). With renormalize=True each rounded row is
    divided by its sum (in float64); a row whose entries all round to 0 (possible when
    C > 2 * 10**decimals) has nothing to rescale and is answered with the
    one-hot vector of its top-1 class.

    Rounding can tie the top class with another one (0.31, 0.34 -> 0.3, 0.3),
    so the top-1 label is not always kept.

    Args:
        decimals: number of decimals kept, >= 0 (default 1).
        renormalize: rescale rounded rows to sum 1 (default False: faithful).
        num_classes: number of columns C to insist on (None: any).
        sum_tol: rows must sum to 1 within this absolute tolerance.
    """

    name = "Rounding"
    preserves_top1 = False
    deterministic = True
    discrete_outputs = True

    def __init__(self, decimals: int = 1, renormalize: bool = False, num_classes: int | None = None,
                 sum_tol: float = DEFAULT_SUM_TOL):
        if isinstance(decimals, bool) or not isinstance(decimals, numbers.Integral) or not 0 <= decimals <= 15:
            raise ValueError(f"decimals must be an integer in [0, 15], got {decimals!r}")
        self.decimals = int(decimals)
        self.renormalize = params.flag(renormalize, "renormalize")
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.sum_tol = params.sum_tol(sum_tol)

    def __repr__(self) -> str:
        return f"Rounding(decimals={self.decimals}, renormalize={self.renormalize}, num_classes={self.num_classes})"

    def __call__(self, probs: Any) -> Any:
        """Rounded predictions, in the input's dtype."""
        batch, y, top = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol)
        out = torch.round(y, decimals=self.decimals)
        if self.renormalize:
            sums = out.sum(dim=1, keepdim=True, dtype=torch.float64)
            one_hot = torch.zeros_like(y).scatter_(1, top[:, None], 1.0)
            out = torch.where(sums > 0, (out / sums).to(y.dtype), one_hot)
        self.stats.record(batch.rows)
        return io.restore(out, batch)
