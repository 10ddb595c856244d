"""Choosing the baselines' utility parameters on the defender's own predictions."""

from __future__ import annotations

import numpy as np

from ..defenses.adaptive_misinformation import AdaptiveMisinformation
from ..defenses.reverse_sigmoid import ReverseSigmoid


def _max_l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).sum(axis=1).max())


def reverse_sigmoid_beta(probs: np.ndarray, labels: np.ndarray, target_max_l1: float = 1.0, gamma: float = 0.2,
                         max_accuracy_drop: float = 0.01, steps: int = 40) -> float:
    """Bisection for the largest beta whose largest L1 distortion on `probs` stays within
    target_max_l1 and whose protected accuracy stays within max_accuracy_drop of the clean one.

    The accuracy condition matters for weakly confident targets, whose distortion
    never reaches the budget: without it beta grows until the answers are noise.
    """
    clean = float((probs.argmax(1) == labels).mean())

    def acceptable(beta: float) -> bool:
        defended = ReverseSigmoid(beta, gamma)(probs)
        return (_max_l1(defended, probs) <= target_max_l1
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


def adaptive_misinformation_tau(probs: np.ndarray, misinformation_probs: np.ndarray, labels: np.ndarray,
                                max_accuracy_drop: float = 0.01, nu: float = 1000.0) -> float:
    """The largest tau (on a 0.01 grid) whose protected accuracy stays within max_accuracy_drop of the clean one."""
    clean = float((probs.argmax(1) == labels).mean())
    best = 0.0
    for tau in np.arange(0.0, 1.0001, 0.01):
        defended = AdaptiveMisinformation(float(tau), nu)(probs, misinformation_probs)
        if float((defended.argmax(1) == labels).mean()) >= clean - max_accuracy_drop:
            best = float(tau)
    return round(best, 2)
