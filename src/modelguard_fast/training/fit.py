"""fit(): Adam on (soft-label) cross-entropy over the one training loop (training.loop); predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .loop import train_loop


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability targets (hard labels: pass one-hot rows)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def fit(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, epochs: int = 30, lr: float = 1e-3,
        batch_size: int = 64, seed: int = 0, weight_decay: float = 0.0, progress: bool = False,
        desc: str = "training") -> nn.Module:
    """Trains `model` with Adam on (x, targets); targets are class indices or probability rows.

    Shuffling uses its own generator seeded with `seed`, never the global RNG.
    progress: a tqdm bar over the epochs, labelled `desc`.
    """
    device = next(model.parameters()).device
    soft = targets.dtype.is_floating_point
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def batch_loss(idx: torch.Tensor, step: int, state: None) -> torch.Tensor:
        logits = model(x[idx].to(device))
        tb = targets[idx].to(device)
        return soft_cross_entropy(logits, tb) if soft else F.cross_entropy(logits, tb)

    return train_loop(model, optimizer, len(x), batch_size, torch.Generator().manual_seed(seed), batch_loss,
                      epochs=epochs, progress=progress, desc=desc, unit="epoch")


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Softmax outputs in eval mode, on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([F.softmax(model(x[i : i + batch_size].to(device)), dim=1)
                      for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_proba(model, x).argmax(dim=1).cpu() == y).float().mean())
