"""D-DAE (Chen et al., S&P 2023) and D-DAE+: a restorer MLP that maps defended answers back to clean ones.

D-DAE trains it on pairs (p(f_i(x)), f_i(x)) from small shadow models f_i
trained on random class subsets of the attacker's labelled pool, for every
queried image x; D-DAE+ trains the same restorer on the partial Bayes table.
The public code leaves the restorer in training mode when it restores (its
batch-normalisation layers then use the statistics of each batch of
answers); here it always restores in eval mode.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..defense import Defense
from ..training import predict_proba
from ..training.loop import train_loop
from ._seeding import ModelSource, build_model, derive_seed, isolated_rng
from .config import AttackConfig
from .substitute import TrainSettings, train_substitute

logger = logging.getLogger(__name__)

LEAKY_SLOPE = 0.2
#: The paper's restorer sizes (h1, h2) per number of classes.
PAPER_HIDDEN = {10: (128, 64), 100: (1024, 512), 200: (2048, 1024), 256: (2048, 1024)}


def restorer_hidden_sizes(num_classes: int) -> tuple[int, int]:
    """(h1, h2): h1 is the power of two nearest to 10 C on a log scale, h2 = h1 / 2.

    This reproduces every entry of the paper's table (PAPER_HIDDEN) and the
    public code's 512/256 at C = 43.
    """
    h1 = 2 ** round(math.log2(10 * num_classes))
    return h1, max(1, h1 // 2)


class Restorer(nn.Module):
    """C -> h1 -> h2 -> C; every linear layer followed by batch normalisation and LeakyReLU(0.2); softmax out.

    The output layer is normalised and activated too before the softmax, as
    in the public code.
    """

    def __init__(self, num_classes: int, hidden: Optional[tuple[int, int]] = None):
        super().__init__()
        h1, h2 = hidden if hidden is not None else restorer_hidden_sizes(num_classes)
        sizes = [num_classes, h1, h2, num_classes]
        self.layers = nn.Sequential(*[
            module for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
            for module in (nn.Linear(fan_in, fan_out), nn.BatchNorm1d(fan_out), nn.LeakyReLU(LEAKY_SLOPE))])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.layers(y), dim=1)


def train_restorer(perturbed: torch.Tensor, clean: torch.Tensor, config: AttackConfig, *, seed: int,
                   device: torch.device, verbose: bool = False) -> Restorer:
    """Trains a Restorer to map perturbed rows to clean ones: L1 loss times C (the mean per-row L1), SGD.

    Epochs, batch size, learning rate, momentum, weight decay and the step
    schedule come from the restorer_* fields of `config`. A trailing batch of
    a single row is skipped (batch normalisation cannot train on one row).
    Returns the restorer in eval mode.
    """
    if len(perturbed) < 2:
        raise ValueError(f"the restorer needs at least 2 training pairs, got {len(perturbed)}")
    C = perturbed.shape[1]
    shuffle = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
    with isolated_rng(derive_seed(seed, "torch"), device):
        restorer = Restorer(C, config.restorer_hidden).to(device)
        optimizer = torch.optim.SGD(restorer.parameters(), lr=config.restorer_lr, momentum=config.restorer_momentum,
                                    weight_decay=config.restorer_weight_decay)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.restorer_lr_step,
                                                   gamma=config.restorer_lr_gamma)
        return train_loop(restorer, optimizer, len(perturbed), config.restorer_batch_size, shuffle,
                          lambda idx, step, state: F.l1_loss(restorer(perturbed[idx].to(device)),
                                                             clean[idx].to(device)) * C,
                          epochs=config.restorer_epochs, schedule=schedule, min_batch=2, progress=verbose,
                          desc="restorer")


@torch.no_grad()
def restore(restorer: Restorer, received: torch.Tensor, device: torch.device, batch_size: int = 1024
            ) -> torch.Tensor:
    """The restorer's answers to received rows, in eval mode (each row independent of its batch)."""
    restorer.eval()
    return torch.cat([restorer(received[i:i + batch_size].to(device)).to(received.device)
                      for i in range(0, len(received), batch_size)])


def train_shadow_models(pool_x: torch.Tensor, pool_y: torch.Tensor, num_classes: int, factory: ModelSource,
                        config: AttackConfig, *, seed: int, device: torch.device, verbose: bool = False
                        ) -> list[nn.Module]:
    """S shadow models, each trained on the pool images of k random pool classes mapped to k random outputs.

    k = config.ddae_shadow_classes, or min(C, number of pool classes); the
    training images are capped at config.ddae_shadow_samples (a random sample);
    training is the substitute routine with one-hot labels and the
    ddae_shadow_* settings of `config` (the public code's, see AttackConfig).
    """
    classes = torch.unique(pool_y)
    k = config.ddae_shadow_classes if config.ddae_shadow_classes is not None else min(num_classes, len(classes))
    if k > min(num_classes, len(classes)):
        raise ValueError(f"AttackConfig.ddae_shadow_classes must be at most min(C={num_classes}, pool classes="
                         f"{len(classes)}), got {k}")
    settings = TrainSettings.shadow(config)
    models = []
    for s in tqdm(range(config.ddae_shadow_models), desc="shadow models", disable=not verbose, leave=False):
        part_seed = derive_seed(seed, f"shadow{s}")
        gen = torch.Generator().manual_seed(part_seed)
        chosen = classes[torch.randperm(len(classes), generator=gen)[:k]]
        outputs = torch.randperm(num_classes, generator=gen)[:k]
        idx = torch.nonzero(torch.isin(pool_y, chosen)).flatten()
        if config.ddae_shadow_samples is not None:
            idx = idx[torch.randperm(len(idx), generator=gen)[:config.ddae_shadow_samples]]
        position = (pool_y[idx][:, None] == chosen[None, :]).int().argmax(dim=1)
        targets = F.one_hot(outputs[position], num_classes).float()
        model = build_model(factory, part_seed, device, "shadow")
        models.append(train_substitute(model, pool_x[idx], targets, settings, seed=part_seed, device=device))
    return models


def shadow_pairs(shadows: list[nn.Module], x: torch.Tensor, offline: Defense,
                 views: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(perturbed, clean) pairs: every shadow model's softmax of every image x through the offline map.

    offline: the defense's offline_map(); views: its query_views of x (MAD, AM), else None.

    Pairs whose offline answer is farther than eps (ModelGuard-S's nearest
    fallback) are dropped, as in the partial Bayes table.
    """
    perturbed, clean = [], []
    for shadow in shadows:
        probs = predict_proba(shadow, x).float().cpu()
        answers, keep = offline.replay(probs, views)
        perturbed.append(answers[keep])
        clean.append(probs[keep])
    pairs = torch.cat(perturbed), torch.cat(clean)
    if len(pairs[0]) == 0:
        raise RuntimeError(f"every one of the {len(x) * len(shadows)} shadow predictions was farther than eps from "
                           "its offline answer, so D-DAE has no training pair; train the shadow models longer "
                           "(AttackConfig.ddae_shadow_epochs) so their predictions look like the target's")
    logger.info("D-DAE: %d training pairs from %d shadow models", len(pairs[0]), len(shadows))
    return pairs
