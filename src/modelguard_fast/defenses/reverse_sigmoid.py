"""Reverse Sigmoid (Lee et al.): a perturbation that pushes the attacker's loss up."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import DEFAULT_SUM_TOL, choice, real_number
from . import _torch_io as io
from .base import Defense

VARIANTS = ("public", "art")
#: ART clips probabilities to [ART_CLIP, 1 - ART_CLIP] before taking logits.
ART_CLIP = 1e-9


class ReverseSigmoid(Defense):
    """y' = (y - r) / sum(y - r) with r = beta * (sigmoid(gamma * logit(y)) - 1/2).

    variant="public" (default) is the formula of the paper's public code: no
    clipping, so entries equal to 0 or 1 get logits of -inf or +inf and r of
    -beta/2 or +beta/2 (entries a little above 1, which rows may hold within
    sum_tol, are treated as 1). variant="art" is IBM ART's ReverseSigmoid:
    the logit is taken of y clipped to [1e-9, 1 - 1e-9], and y - r is clipped
    to [0, 1] before renormalising.

    The paper uses gamma = 0.2 and beta = 0.008 / 0.011 / 0.02 / 0.21 for
    Caltech256 / CUB200 / CIFAR100 / CIFAR10 (max L1 distortion about 1).
    Computed in float64 and returned in the input's dtype.

    Args:
        beta: perturbation magnitude, >= 0.
        gamma: convergence parameter, > 0 (default 0.2).
        variant: "public" (default) or "art".
        num_classes: number of columns C to insist on (None: any).
        sum_tol: rows must sum to 1 within this absolute tolerance.
    """

    name = "RevSig"
    preserves_top1 = False
    deterministic = True
    discrete_outputs = False

    def __init__(self, beta: float, gamma: float = 0.2, variant: str = "public", num_classes: int | None = None,
                 sum_tol: float = DEFAULT_SUM_TOL):
        self.beta = real_number(beta, "beta")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        self.gamma = real_number(gamma, "gamma")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        self.variant = choice(variant, "variant", VARIANTS)
        self.num_classes = io.optional_classes(num_classes)
        self.sum_tol = io.sum_tolerance(sum_tol)

    def __repr__(self) -> str:
        return (f"ReverseSigmoid(beta={self.beta}, gamma={self.gamma}, variant={self.variant!r}, "
                f"num_classes={self.num_classes})")

    def __call__(self, probs: Any) -> Any:
        """Perturbed predictions; each row sums to 1."""
        batch, y = io.tensor_batch(probs, "probs", self.num_classes, np.float64)
        io.check_probabilities(y, "probs", self.sum_tol)
        if self.variant == "public":
            clipped = y.clamp(max=1.0)
            perturbed = y - self.beta * (torch.sigmoid(self.gamma * torch.log(clipped / (1.0 - clipped))) - 0.5)
        else:
            clipped = y.clamp(ART_CLIP, 1.0 - ART_CLIP)
            r = self.beta * (torch.sigmoid(-self.gamma * torch.log((1.0 - clipped) / clipped)) - 0.5)
            perturbed = (y - r).clamp(0.0, 1.0)
        norm = perturbed.sum(dim=1, keepdim=True)
        bad = ~(norm[:, 0] > 0)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f"beta={self.beta} is too large for probs row {row}: y - r sums to "
                             f"{float(norm[row, 0])!r}, which cannot be renormalised")
        return io.restore(perturbed / norm, batch)
