"""Losses for training the models behind Adaptive Misinformation.

- The target is trained with Outlier Exposure (Hendrycks et al.): cross-entropy
  on in-distribution data plus `weight` times the cross-entropy between its
  softmax on outlier images and the uniform distribution, so that it is unsure
  (low max probability) out of distribution.
- The misinformation model is trained on in-distribution data to put little
  mass on the true class: -log(1 - p_y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import choice, real_number

REDUCTIONS = ("mean", "sum", "none")


def _logits(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be 2-D (B, C) logits, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _targets(targets, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch tensor of class indices, got {type(targets).__name__}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0] or targets.dtype != torch.int64:
        raise ValueError(f"targets must be an int64 tensor of shape ({logits.shape[0]},), got "
                         f"{targets.dtype} of shape {tuple(targets.shape)}")
    return targets


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def uniform_cross_entropy(logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy between the uniform distribution and softmax(logits), per row: -mean_k log p_k."""
    logits = _logits(logits, "logits")
    return _reduce(-F.log_softmax(logits, dim=1).mean(dim=1), choice(reduction, "reduction", REDUCTIONS))


def outlier_exposure_loss(logits: torch.Tensor, targets: torch.Tensor, outlier_logits: torch.Tensor,
                          weight: float = 1.0) -> torch.Tensor:
    """CE(logits, targets) + weight * CE(uniform, softmax(outlier_logits)), each averaged over its batch.

    Args:
        logits: the target's logits on in-distribution inputs, (B, C).
        targets: their labels, int64 (B,).
        outlier_logits: the target's logits on outlier inputs, (B_out, C).
        weight: lambda, the outlier term's weight (1.0 in the paper, following Kariyappa et al.).
    """
    logits = _logits(logits, "logits")
    outlier_logits = _logits(outlier_logits, "outlier_logits")
    if outlier_logits.shape[1] != logits.shape[1]:
        raise ValueError(f"outlier_logits must have {logits.shape[1]} columns like logits, got shape "
                         f"{tuple(outlier_logits.shape)}")
    weight = real_number(weight, "weight")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    return F.cross_entropy(logits, _targets(targets, logits)) + weight * uniform_cross_entropy(outlier_logits)


def misinformation_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log(1 - p_y), p = softmax(logits): low when the model puts little mass on the true class y.

    Computed as logsumexp(z) - logsumexp(z without z_y), which stays finite
    where 1 - p_y underflows. Needs at least 2 classes.
    """
    logits = _logits(logits, "logits")
    if logits.shape[1] < 2:
        raise ValueError(f"logits must have at least 2 columns for misinformation_loss, got shape "
                         f"{tuple(logits.shape)}")
    targets = _targets(targets, logits)
    reduction = choice(reduction, "reduction", REDUCTIONS)
    others = logits.scatter(1, targets[:, None], -torch.inf)
    loss = torch.logsumexp(logits, dim=1) - torch.logsumexp(others, dim=1)
    return _reduce(loss, reduction)
