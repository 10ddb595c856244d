"""The one minibatch training loop: seeded shuffling, a pluggable loss and an optional schedule.

Every model this package trains goes through it: the target (Outlier
Exposure) and the misinformation model (training.target), fit(), the
attacks' substitutes and shadow models (attacks.substitute) and the D-DAE
restorer (attacks.ddae). What differs between them is the loss of a batch,
the optimizer and its schedule, and what happens before each epoch.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm


def train_loop(model: nn.Module, optimizer: torch.optim.Optimizer, rows: int, batch_size: int,
               generator: torch.Generator, batch_loss: Callable[[torch.Tensor, int, Any], torch.Tensor], *,
               epochs: int, schedule: Optional[Any] = None, min_batch: int = 1,
               before_epoch: Optional[Callable[[], Any]] = None, progress: bool = False,
               desc: str = "training", unit: str = "it") -> nn.Module:
    """Trains `model` for `epochs` passes over `rows` training rows; returns it in eval mode.

    Each epoch: before_epoch() (its result, e.g. an epoch's outlier order, is
    handed to every batch), then a permutation of range(rows) drawn from
    `generator` (the only randomness the loop itself uses), cut into batches of
    `batch_size` indices (int64); a batch shorter than `min_batch` is skipped
    (2 for batch normalisation). For each batch, batch_loss(indices, step,
    epoch_state) gives a scalar loss; the optimizer takes one step on it.
    schedule.step() runs after every epoch. `progress`: a tqdm bar over the
    epochs, labelled `desc`.
    """
    model.train()
    for _ in tqdm(range(epochs), desc=desc, unit=unit, disable=not progress, leave=False):
        state = before_epoch() if before_epoch is not None else None
        order = torch.randperm(rows, generator=generator)
        for step, start in enumerate(range(0, rows, batch_size)):
            idx = order[start:start + batch_size]
            if len(idx) < min_batch:
                continue
            loss = batch_loss(idx, step, state)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if schedule is not None:
            schedule.step()
    return model.eval()
