"""How well an attack did: extraction accuracy, fidelity and recovery distance (Section 4 of the paper)."""

from __future__ import annotations

import torch
from torch import nn

from ..training import predict_proba


def _top1(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return predict_proba(model, x).argmax(dim=1).cpu()


def extraction_accuracy(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Top-1 accuracy of the substitute on the target's test set."""
    return float((_top1(model, test_x) == test_y.cpu()).double().mean())


def fidelity(model: nn.Module, test_x: torch.Tensor, target_top1: torch.Tensor) -> float:
    """Agreement of the substitute's top-1 with the undefended target's top-1 on the test set."""
    return float((_top1(model, test_x) == target_top1.cpu()).double().mean())


def recovery_distances(labels: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-row L2 distance ||y~ - y||_2 between the labels an attack trains on and the clean predictions."""
    if labels.shape != clean.shape:
        raise ValueError(f"labels and clean must have the same shape, got {tuple(labels.shape)} and "
                         f"{tuple(clean.shape)}")
    return torch.linalg.vector_norm(labels.double() - clean.double().to(labels.device), dim=1)


def recovery_distance(labels: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean recovery distance E||y~ - y||_2 (Figure 4 and Table 6 of the paper)."""
    return float(recovery_distances(labels, clean).mean())
