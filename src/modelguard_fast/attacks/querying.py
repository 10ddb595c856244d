"""Query strategies: which images the attacker asks about, in which order, and how often.

- KnockoffNets "random": a seeded permutation of the attacker's natural pool,
  its first `budget` images, asked in that fixed order.
- JBDA-TR: a natural seed set grown by rounds of substitute training and
  targeted I-FGSM augmentation until the budget is spent.
- A QueryPlan says how each image is asked: m times in m passes (m-QPI) and/or
  as randomly augmented copies (the Smoothing attack), answers averaged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._validation import positive_int
from .oracle import Oracle

logger = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def pool_order(pool_size: int, seed: int) -> torch.Tensor:
    """The seeded permutation of the pool that every attack draws its natural images from."""
    return torch.randperm(positive_int(pool_size, "pool_size"), generator=torch.Generator().manual_seed(seed))


def knockoff_indices(pool_size: int, budget: int, seed: int) -> torch.Tensor:
    """KnockoffNets "random": the first `budget` entries of the seeded pool permutation."""
    budget = positive_int(budget, "budget")
    if budget > pool_size:
        raise ValueError(f"budget must be at most the pool size {pool_size} for KnockoffNets, got {budget}")
    return pool_order(pool_size, seed)[:budget]


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of the zero-padded image back to its size, then a horizontal flip w.p. 1/2.

    x is (N, channels, H, W); draws come from `generator` (a CPU generator).
    """
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip needs images (N, channels, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    out = x
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        top = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        out = padded[batch, channel, rows, cols]
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    return out


@dataclass
class Answers:
    """What the attacker learnt about a set of images.

    labels: (N, C) the average of every answer received for each image.
    passes: (m, N, C) the answers of each of the m passes of m-QPI (without
        augmentation), for the QPI diagnostics; None for a single pass.
    """

    labels: torch.Tensor
    passes: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(first: "Answers", second: "Answers") -> "Answers":
        passes = None if first.passes is None else torch.cat([first.passes, second.passes], dim=1)
        return Answers(torch.cat([first.labels, second.labels]), passes)


@dataclass(frozen=True)
class QueryPlan:
    """How every image is asked: `repeats` passes (m-QPI) of `copies` copies, augmented by `augment`
    when given (Smoothing), in oracle calls of `batch_size` images, always in the same order:
    pass by pass, copy by copy, batch by batch."""

    batch_size: int = 256
    repeats: int = 1
    copies: int = 1
    augment: Optional[Augment] = None

    @property
    def cost_per_image(self) -> int:
        return self.repeats * self.copies

    def ask(self, oracle: Oracle, x: torch.Tensor, generator: torch.Generator) -> Answers:
        total = None
        passes = []
        for _ in range(self.repeats):
            for _ in range(self.copies):
                parts = []
                for i in range(0, len(x), self.batch_size):
                    batch = x[i:i + self.batch_size]
                    parts.append(oracle.query(batch if self.augment is None else self.augment(batch, generator)))
                answers = torch.cat(parts).float()
                total = answers.clone() if total is None else total.add_(answers)
                if self.augment is None and self.repeats > 1:
                    passes.append(answers)
        labels = total / self.cost_per_image
        return Answers(labels, torch.stack(passes) if passes else None)


def targeted_ifgsm(model: nn.Module, x: torch.Tensor, num_classes: int, steps: int, eps: float, step_size: float,
                   input_range: Optional[tuple[float, float]], generator: torch.Generator, device: torch.device,
                   batch_size: int = 256) -> torch.Tensor:
    """JBDA-TR's augmentation: I-FGSM toward a target class redrawn at random for every image at every step.

    Each step moves x by step_size against the sign of the gradient of the
    cross-entropy to the target, then clips to the L-infinity ball of radius
    eps around the starting image and to input_range. Returns new images on x's device.
    """
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        start = x[i:i + batch_size].to(device)
        adv = start.clone()
        for _ in range(steps):
            target = torch.randint(0, num_classes, (len(start),), generator=generator).to(device)
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), target)
            grad, = torch.autograd.grad(loss, adv)
            adv = adv.detach() - step_size * grad.sign()
            adv = torch.minimum(torch.maximum(adv, start - eps), start + eps)
            if input_range is not None:
                adv = adv.clamp(*input_range)
        out.append(adv.detach().to(x.device))
    return torch.cat(out)


@dataclass(frozen=True)
class JbdaSettings:
    """JBDA-TR's augmentation: new images per image and round, and the I-FGSM settings."""

    new_per_sample: int
    steps: int
    eps: float
    step_size: float
    input_range: Optional[tuple[float, float]]


def jbda_tr(oracle: Oracle, seed_x: torch.Tensor, budget: int, plan: QueryPlan,
            train_round: Callable[[torch.Tensor, torch.Tensor], nn.Module], settings: JbdaSettings,
            num_classes: int, generators: tuple[torch.Generator, torch.Generator], device: torch.device,
            verbose: bool = False) -> tuple[torch.Tensor, Answers]:
    """JBDA-TR: returns the query images (seed set first, then each round's) and their answers.

    Each round trains a substitute with train_round(images, labels) (which
    starts from the substitute's initial weights), then makes
    new_per_sample I-FGSM images from every image so far, in copy-major
    order, keeping only as many as the budget (in images) still allows.
    generators: (I-FGSM targets, the plan's augmentation).
    """
    budget = positive_int(budget, "budget")
    target_gen, ask_gen = generators
    x = seed_x[:budget]
    answers = plan.ask(oracle, x, ask_gen)
    rounds = math.ceil(math.log(budget / len(x), 1 + settings.new_per_sample)) if budget > len(x) else 0
    with tqdm(total=rounds, desc="JBDA-TR rounds", disable=not verbose) as bar:
        while len(x) < budget:
            model = train_round(x, answers.labels)
            wanted = min(settings.new_per_sample * len(x), budget - len(x))
            new = []
            for copy in range(math.ceil(wanted / len(x))):
                take = min(len(x), wanted - copy * len(x))
                new.append(targeted_ifgsm(model, x[:take], num_classes, settings.steps, settings.eps,
                                          settings.step_size, settings.input_range, target_gen, device))
            new_x = torch.cat(new)
            answers = Answers.concat(answers, plan.ask(oracle, new_x, ask_gen))
            x = torch.cat([x, new_x])
            logger.info("JBDA-TR: %d of %d images queried", len(x), budget)
            bar.update(1)
    return x, answers
