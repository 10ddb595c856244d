"""Training the defender's models: the target with Outlier Exposure, and the misinformation model."""

from __future__ import annotations

import torch
from torch import nn

from .losses import misinformation_loss, outlier_exposure_loss


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


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
    model.train()
    for _ in range(epochs):
        outlier_order = torch.randperm(len(outliers), generator=generator)
        for step, idx in enumerate(_batches(len(x), batch_size, generator)):
            out_idx = outlier_order[(torch.arange(len(idx)) + step * batch_size) % len(outliers)]
            logits = model(torch.cat([x[idx], outliers[out_idx]]).to(device))
            loss = outlier_exposure_loss(logits[: len(idx)], y[idx].to(device), logits[len(idx) :], oe_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def train_misinformation_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30,
                               lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Adam on -log(1 - p_y): a model that puts little mass on the true class."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in _batches(len(x), batch_size, generator):
            loss = misinformation_loss(model(x[idx].to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model
