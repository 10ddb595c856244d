"""The one substitute-training routine every attack ends in (also used for JBDA-TR rounds and shadow models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..training.fit import soft_cross_entropy
from ..training.loop import train_loop
from ._seeding import derive_seed, isolated_rng
from .config import AttackConfig

ROTATIONS = 4


@dataclass(frozen=True)
class TrainSettings:
    """SGD with momentum and weight decay; the learning rate is multiplied by lr_gamma every lr_step epochs."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    lr_step: int
    lr_gamma: float

    @classmethod
    def from_config(cls, config: AttackConfig, epochs: Optional[int] = None, query: str = "knockoff"
                    ) -> "TrainSettings":
        """The substitute's settings; JBDA-TR substitutes (query="jbda") take config.jbda_weight_decay."""
        weight_decay = config.jbda_weight_decay if query == "jbda" else config.weight_decay
        return cls(config.epochs if epochs is None else epochs, config.batch_size, config.lr, config.momentum,
                   weight_decay, config.lr_step, config.lr_gamma)

    @classmethod
    def shadow(cls, config: AttackConfig) -> "TrainSettings":
        """The D-DAE shadow models' settings (the ddae_shadow_* fields)."""
        return cls(config.ddae_shadow_epochs, config.ddae_shadow_batch_size, config.ddae_shadow_lr,
                   config.ddae_shadow_momentum, config.ddae_shadow_weight_decay, config.ddae_shadow_lr_step,
                   config.ddae_shadow_lr_gamma)


def rotated(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images rotated by 0, 90, 180 and 270 degrees (rotation-major), and the rotation labels 0..3."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"the S4L rotation loss needs square images (N, channels, H, H), got shape {tuple(x.shape)}")
    images = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS, device=x.device).repeat_interleave(len(x))
    return images, labels


def has_batch_norm(model: nn.Module) -> bool:
    """Whether `model` has a batch-normalisation layer (which cannot train on a batch of one row)."""
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def check_s4l_model(model: nn.Module) -> None:
    """S4L needs a substitute whose last layer `head` sits on a shared body `features(x)`, as SmallCNN's."""
    if not callable(getattr(model, "features", None)) or not isinstance(getattr(model, "head", None), nn.Module):
        raise TypeError(f"strategy 's4l' needs a substitute with a features(x) method (the body, up to the last "
                        f"layer) and a `head` module (the last layer), like modelguard_fast.models.SmallCNN; got "
                        f"{type(model).__name__}")


def train_substitute(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, settings: TrainSettings, *, seed: int,
                     device: torch.device, rotation_weight: float = 0.0, verbose: bool = False,
                     desc: str = "substitute") -> nn.Module:
    """Trains `model` (already on `device`) on images x and probability rows `targets` with soft cross-entropy.

    With rotation_weight > 0 (S4L), a 4-way rotation head on model.features
    is trained alongside, adding rotation_weight times the mean rotation
    cross-entropy over the four rotated copies of each batch (the paper's
    (1/4) sum over rotations); the head is discarded afterwards.

    Shuffling uses a torch.Generator seeded from `seed`; initialisation of the
    rotation head and any dropout use torch's default generators, seeded and
    restored around the call. x and targets may live on the CPU: batches are
    moved to `device`. A model with batch normalisation skips a trailing batch
    of a single row in each epoch (batch statistics need two rows; the
    D-DAE restorer does the same), and refuses a training set of one image.
    Returns the model in eval mode.
    """
    if len(x) != len(targets):
        raise ValueError(f"x and targets must have the same length, got {len(x)} and {len(targets)}")
    if len(x) == 0:
        raise ValueError("cannot train on an empty set of images")
    batch_norm = has_batch_norm(model)
    if batch_norm and len(x) < 2:
        raise ValueError(f"cannot train {type(model).__name__}, which has batch normalisation, on a single image: "
                         "batch statistics need at least 2 rows")
    shuffle = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
    with isolated_rng(derive_seed(seed, "torch"), device):
        params = list(model.parameters())
        head = None
        if rotation_weight > 0:
            check_s4l_model(model)
            with torch.no_grad():
                width = model.features(x[:1].to(device)).shape[1]
            head = nn.Linear(width, ROTATIONS).to(device)
            params += list(head.parameters())
        optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                                    weight_decay=settings.weight_decay)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma)

        def batch_loss(idx: torch.Tensor, step: int, state: None) -> torch.Tensor:
            xb, tb = x[idx].to(device), targets[idx].to(device)
            if head is None:
                return soft_cross_entropy(model(xb), tb)
            images, labels = rotated(xb)
            features = model.features(images)
            return (soft_cross_entropy(model.head(features[:len(xb)]), tb)
                    + rotation_weight * F.cross_entropy(head(features), labels))

        return train_loop(model, optimizer, len(x), settings.batch_size, shuffle, batch_loss, epochs=settings.epochs,
                          schedule=schedule, min_batch=2 if batch_norm else 1, progress=verbose, desc=desc)

