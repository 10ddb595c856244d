"""Adaptive Misinformation (Kariyappa and Qureshi, CVPR 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params
from .._validation import real_number
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from . import _torch_io as io


class AdaptiveMisinformation(Defense):
    """y' = (1 - a) y + a y_mis with a = 1 / (1 + exp(nu * (max(y) - tau))).

    Queries the target is unsure about (max(y) below tau, which an
    Outlier-Exposure-trained target gives to out-of-distribution inputs) are
    answered with the misinformation model's softmax y_mis; confident ones
    are left nearly unchanged. The misinformation model is trained with
    modelguard_fast.training.misinformation_loss, the target with
    outlier_exposure_loss. The top-1 label is not kept.

    The paper uses nu = 1000 (the original authors' code 10,000) and tau =
    0.25 / 0.3 / 0.4 / 0.7 for Caltech256 / CUB200 / CIFAR100 / CIFAR10.
    Computed in float64 (a as a numerically stable sigmoid) and returned in
    the input's dtype.

    Calling: ``am(probs, misinformation_probs)``, where misinformation_probs
    is the misinformation model's softmax of the same queries (same shape as
    probs). With a misinformation_model, ``am.query_view(x)`` computes it,
    and GuardedModel does this for you.

    Args:
        tau: threshold on the top probability, in [0, 1].
        nu: steepness of the switch, > 0 (default 1000).
        misinformation_model: the misinformation model (logits out), used by query_view.
        num_classes: number of columns C to insist on (None: any).
        sum_tol: rows of both inputs must sum to 1 within this absolute tolerance.
    """

    name = "AM"
    preserves_top1 = False
    deterministic = True
    discrete_outputs = False
    needs_query = True

    def __init__(self, tau: float, nu: float = 1000.0, misinformation_model: nn.Module | None = None,
                 num_classes: int | None = None, sum_tol: float = DEFAULT_SUM_TOL):
        self.tau = real_number(tau, "tau")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        self.nu = real_number(nu, "nu")
        if self.nu <= 0:
            raise ValueError(f"nu must be > 0, got {self.nu}")
        if misinformation_model is not None and not isinstance(misinformation_model, nn.Module):
            raise TypeError("misinformation_model must be a torch.nn.Module or None, got "
                            f"{type(misinformation_model).__name__}")
        self.misinformation_model = misinformation_model
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.sum_tol = params.sum_tol(sum_tol)

    @classmethod
    def calibrated_tau(cls, probs: np.ndarray, misinformation_probs: np.ndarray, labels: np.ndarray,
                       max_accuracy_drop: float = 0.01, nu: float = 1000.0) -> float:
        """The largest tau on a 0.01 grid of [0, 1] whose protected accuracy stays within max_accuracy_drop
        of the clean one.

        probs, misinformation_probs: (N, C) the target's and the misinformation model's softmax of the
        defender's own images (float64); labels: (N,) their true classes.
        """
        clean = float((probs.argmax(1) == labels).mean())
        best = 0.0
        for tau in np.arange(0.0, 1.0001, 0.01):
            defended = cls(float(tau), nu)(probs, misinformation_probs)
            if float((defended.argmax(1) == labels).mean()) >= clean - max_accuracy_drop:
                best = float(tau)
        return round(best, 2)

    def __repr__(self) -> str:
        return f"AdaptiveMisinformation(tau={self.tau}, nu={self.nu}, num_classes={self.num_classes})"

    @property
    def query_model(self) -> nn.Module | None:
        return self.misinformation_model

    def query_view(self, x: torch.Tensor) -> torch.Tensor:
        """The misinformation model's softmax of the query batch x."""
        if self.misinformation_model is None:
            raise ValueError("this AdaptiveMisinformation has no misinformation_model; pass misinformation_probs "
                             "to the call, or build it with misinformation_model=...")
        return io.model_softmax(self.misinformation_model, x)

    def __call__(self, probs: Any, misinformation_probs: Any) -> Any:
        """Defended predictions for `probs`, given the misinformation model's softmax of the same queries."""
        batch, y, _ = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol, np.float64)
        mis = io.companion(misinformation_probs, "misinformation_probs", batch, y, self.sum_tol)
        a = torch.sigmoid(self.nu * (self.tau - y.max(dim=1, keepdim=True).values))
        out = (1.0 - a) * y + a * mis
        self.stats.record(batch.rows)
        return io.restore(out, batch)
