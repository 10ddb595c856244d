"""Reverse Sigmoid (Lee et al.): a perturbation that pushes the attacker's loss up."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import params
from .._validation import choice, real_number
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from . import _torch_io as io

VARIANTS = ("public", "art")
#: ART clips probabilities to [ART_CLIP, 1 - ART_CLIP] before taking logits.
ART_CLIP = 1e-9


class ReverseSigmoid(Defense):
    """y' = (y - r) / sum(y - r) with r = beta * (sigmoid(gamma * logit(y)) - 1/2).

    variant="public" (default) is the formula of the paper's public code: no
    clipping, so entries equal to 0 or 1 get logits of -inf or +inf and r of
    -beta/2 or +beta/2 (entries a little above 1, which rows may hold within
    sum_tol, are treated as 1). variant="art" is IBM ART's ReverseSigmoid
    (art.defences.postprocessor.ReverseSigmoid, checked bit for bit against
    ART 1.20 in the tests): the logit is taken of y clipped to [1e-9, 1 - 1e-9],
    y - r is clipped to [0, 1] and the row is multiplied by the reciprocal of
    its sum, all in numpy and in the input's dtype, as ART computes it. In
    float32, 1 - 1e-9 rounds to 1.0, so an entry of exactly 1.0 keeps an
    infinite logit there (r = beta / 2): [1, 0, 0] answers [0.3917, 0.3041,
    0.3041] at beta = 1, gamma = 0.1, where float64 would give [0.4407, 0.2796,
    0.2796]. Torch and cupy inputs of this variant are computed on the host.

    The paper uses gamma = 0.2 and beta = 0.008 / 0.011 / 0.02 / 0.21 for
    Caltech256 / CUB200 / CIFAR100 / CIFAR10 (max L1 distortion about 1).
    variant="public" is computed in float64 and returned in the input's dtype.

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
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.sum_tol = params.sum_tol(sum_tol)

    @classmethod
    def calibrated_beta(cls, probs: np.ndarray, labels: np.ndarray, max_l1: float = 1.0, gamma: float = 0.2,
                        max_accuracy_drop: float = 0.01, steps: int = 40) -> float:
        """The largest beta whose largest L1 distortion on `probs` stays within max_l1 and whose protected
        accuracy stays within max_accuracy_drop of the clean one (bisection, `steps` halvings).

        probs: (N, C) the defender's own clean predictions (e.g. its test set's softmax), float64;
        labels: (N,) their true classes. The accuracy condition matters for weakly confident
        targets, whose distortion never reaches the budget: without it beta grows until the
        answers are noise. This is how the paper's betas were chosen (max L1 about 1, Section 4.1).
        """
        clean = float((probs.argmax(1) == labels).mean())

        def acceptable(beta: float) -> bool:
            defended = cls(beta, gamma)(probs)
            return (float(np.abs(defended.astype(np.float64) - probs).sum(axis=1).max()) <= max_l1
                    and float((defended.argmax(1) == labels).mean()) >= clean - max_accuracy_drop)

        lo, hi = 0.0, 1.0
        while hi < 64 and acceptable(hi):
            lo, hi = hi, hi * 2
        for _ in range(steps):
            mid = (lo + hi) / 2
            if acceptable(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def __repr__(self) -> str:
        return (f"ReverseSigmoid(beta={self.beta}, gamma={self.gamma}, variant={self.variant!r}, "
                f"num_classes={self.num_classes})")

    def __call__(self, probs: Any) -> Any:
        """Perturbed predictions; each row sums to 1."""
        if self.variant == "art":
            return self._art(probs)
        batch, y, _ = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol, np.float64)
        clipped = y.clamp(max=1.0)
        perturbed = y - self.beta * (torch.sigmoid(self.gamma * torch.log(clipped / (1.0 - clipped))) - 0.5)
        norm = perturbed.sum(dim=1, keepdim=True)
        self._check_norm(norm[:, 0].cpu().numpy())
        self.stats.record(batch.rows)
        return io.restore(perturbed / norm, batch)

    def _art(self, probs: Any) -> Any:
        """ART's arithmetic, step for step, in numpy and the input's dtype."""
        batch, y, _ = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol)
        preds = y.cpu().numpy()
        with np.errstate(divide="ignore", over="ignore"):
            clipped = np.clip(preds, ART_CLIP, 1.0 - ART_CLIP)
            z = -self.gamma * np.log((1.0 - clipped) / clipped)
            r = self.beta * (1.0 / (1.0 + np.exp(-z)) - 0.5)
            perturbed = np.clip(preds - r, 0.0, 1.0)
            norm = np.sum(perturbed, axis=-1, keepdims=True)
            self._check_norm(norm[:, 0])
            out = (1.0 / norm) * perturbed
        result = torch.from_numpy(out.astype(preds.dtype, copy=False))
        self.stats.record(batch.rows)
        return io.restore(result.to(y.device) if batch.on_cuda else result, batch)

    def _check_norm(self, norm: np.ndarray) -> None:
        bad = np.nonzero(~(norm > 0))[0]
        if len(bad):
            raise ValueError(f"beta={self.beta} is too large for probs row {bad[0]}: y - r sums to "
                             f"{float(norm[bad[0]])!r}, which cannot be renormalised")
