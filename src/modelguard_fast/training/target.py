"""Training the defender's models: the target with Outlier Exposure, and the misinformation model."""

from __future__ import annotations

import torch
from torch import nn

from .loop import train_loop
from .losses import misinformation_loss, outlier_exposure_loss


def train_with_outlier_exposure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, outliers: torch.Tensor,
                                epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, oe_weight: float = 1.0,
                                seed: int = 0) -> nn.Module:
    """Adam on cross-entropy plus oe_weight times the outliers' cross-entropy to uniform.

    Each step pairs an in-distribution batch with an outlier batch of the same
    size (outliers cycle in their own shuffled order).
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def batch_loss(idx: torch.Tensor, step: int, outlier_order: torch.Tensor) -> torch.Tensor:
        out_idx = outlier_order[(torch.arange(len(idx)) + step * batch_size) % len(outliers)]
        logits = model(torch.cat([x[idx], outliers[out_idx]]).to(device))
        return outlier_exposure_loss(logits[: len(idx)], y[idx].to(device), logits[len(idx) :], oe_weight)

    return train_loop(model, optimizer, len(x), batch_size, generator, batch_loss, epochs=epochs,
                      before_epoch=lambda: torch.randperm(len(outliers), generator=generator))


def train_misinformation_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30,
                               lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Adam on -log(1 - p_y): a model that puts little mass on the true class."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return train_loop(model, optimizer, len(x), batch_size, torch.Generator().manual_seed(seed),
                      lambda idx, step, state: misinformation_loss(model(x[idx].to(device)), y[idx].to(device)),
                      epochs=epochs)
