"""Everything a defense experiment starts from: data, the target, its misinformation model, the defenses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data import load_bundled
from ..data.bundled import BUNDLED, Splits
from ..data.local import load_local
from ..data.outliers import sample_image_patches
from ..defense import Defense
from ..defenses.adaptive_misinformation import AdaptiveMisinformation
from ..defenses.registry import DEFENSES, defense_spec
from ..defenses.reverse_sigmoid import ReverseSigmoid
from ..models import build_model
from ..training import predict_proba
from ..training.target import train_misinformation_model, train_with_outlier_exposure
from .cache import Cache
from .presets import PIPELINE_DATASETS, PRESETS
from .threads import single_threaded

log = logging.getLogger(__name__)



@dataclass
class Setup:
    dataset: str
    splits: Any
    target: nn.Module
    misinformation: nn.Module | None  # AM's; None when there is no AM (a user's setup without outliers)
    outliers: torch.Tensor | None
    clean_test: np.ndarray  # the target's softmax on its test set
    spec: dict[str, Any]  # what determines the above (for cache keys)
    prepare_args: dict[str, Any] | None  # prepare()'s arguments but cache and device; None for a user's setup
    params: dict[str, float] = field(default_factory=dict)  # calibrated baseline parameters at L1 budget 1.0
    _betas: dict[float, float] = field(default_factory=dict, repr=False)
    factory: Callable[[], nn.Module] | None = None  # a user's model factory (experiments.user)

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def defenses(self) -> tuple[str, ...]:
        """The keys of the defenses this setup can build: all of the registry's (defenses.registry.DEFENSES)
        but those that need a misinformation model (AM) when it has none."""
        return tuple(key for key, spec in DEFENSES.items()
                     if not spec.needs_misinformation or self.misinformation is not None)

    def new_model(self) -> nn.Module:
        """A fresh, untrained model of the target's architecture (substitutes and shadow models)."""
        if self.factory is not None:
            return self.factory()
        return build_model(PRESETS[self.dataset].architecture, self.num_classes, self.splits.image_shape[0])

    def revsig_beta(self, max_l1: float) -> float:
        """Reverse Sigmoid's beta for an L1 budget: params["revsig_beta"] at 1.0, else calibrated the same way
        (ReverseSigmoid.calibrated_beta: largest L1 distortion on the test predictions about max_l1, protected
        accuracy within 1 point)."""
        if max_l1 == 1.0:
            return self.params["revsig_beta"]
        if max_l1 not in self._betas:
            self._betas[max_l1] = ReverseSigmoid.calibrated_beta(self.clean_test, self.splits.test_y.numpy(),
                                                                 max_l1=max_l1)
        return self._betas[max_l1]


def load_splits(dataset: str, seed: int = 0, data_root: str | None = None, outlier_count: int = 2000
                ) -> tuple[Splits, torch.Tensor]:
    """(splits, Outlier Exposure images) of a dataset the pipeline runs on (PIPELINE_DATASETS).

    Bundled sets: load_bundled's seeded split and patches of scikit-learn's sample photographs.
    CIFAR10/100 from `data_root` (modelguard_fast.data.local layouts): the official train and test
    sets, the attacker's pool from TinyImageNet's training images resized to 32 x 32, and the
    first `outlier_count` SVHN training images as outliers, as in the paper.
    """
    if dataset in BUNDLED:
        splits = load_bundled(dataset, seed=seed)
        return splits, sample_image_patches(outlier_count, splits.image_shape[-1], seed=seed)
    if dataset not in PIPELINE_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(PIPELINE_DATASETS)}; got {dataset!r}")
    if data_root is None:
        raise ValueError(f"dataset {dataset!r} is read from a local folder: set the dataset root (--data-root)")
    preset = PRESETS[dataset]
    train_x, train_y = load_local(dataset, data_root, "train")
    test_x, test_y = load_local(dataset, data_root, "test")
    pool_x, pool_y = load_local(preset.pool, data_root, size=train_x.shape[-1])
    outliers = load_local(preset.outliers, data_root)[0][:outlier_count]
    return Splits(dataset, preset.num_classes, train_x, train_y, test_x, test_y, pool_x, pool_y), outliers


def prepare(dataset: str, cache: Cache, device: str = "cpu", seed: int = 0, target_epochs: int = 30,
            outlier_count: int = 2000, oe_weight: float = 1.0, data_root: str | None = None) -> Setup:
    """Loads the data (load_splits) and trains (or loads from the cache) the target and the misinformation
    model, of the dataset's architecture (presets.PRESETS)."""
    splits, outliers = load_splits(dataset, seed, data_root, outlier_count)
    preset = PRESETS[dataset]
    spec = {"dataset": dataset, "seed": seed, "target_epochs": target_epochs, "outliers": outlier_count,
            "oe_weight": oe_weight, "architecture": preset.architecture}
    if data_root is not None and dataset not in BUNDLED:
        spec["data_root"] = str(Path(data_root).resolve())
    prepare_args = {"dataset": dataset, "seed": seed, "target_epochs": target_epochs, "outlier_count": outlier_count,
                    "oe_weight": oe_weight, "data_root": data_root}
    models = {}
    for kind in ("target", "misinformation"):
        torch.manual_seed(seed + (kind == "misinformation"))
        model = build_model(preset.architecture, preset.num_classes, preset.in_channels).to(device)
        if not cache.load_weights(kind, spec, model):
            log.info("training the %s model", kind)
            with single_threaded():
                if kind == "target":
                    train_with_outlier_exposure(model, splits.train_x, splits.train_y, outliers,
                                                epochs=target_epochs, oe_weight=oe_weight, seed=seed)
                else:
                    train_misinformation_model(model, splits.train_x, splits.train_y, epochs=target_epochs,
                                               seed=seed)
            cache.save_weights(kind, spec, model)
        models[kind] = model.to(device).eval().requires_grad_(False)
    clean_test = predict_proba(models["target"], splits.test_x).cpu().numpy().astype(np.float64)
    setup = Setup(dataset, splits, models["target"], models["misinformation"], outliers, clean_test, spec,
                  prepare_args)
    setup.params = _calibrate(setup, preset, cache)
    return setup


def _calibrate(setup: Setup, preset, cache: Cache) -> dict[str, float]:
    cached = cache.get_json("calibration", setup.spec)
    if cached is not None:
        return cached
    mis_test = predict_proba(setup.misinformation, setup.splits.test_x).cpu().numpy().astype(np.float64)
    params = {
        "revsig_beta": preset.revsig_beta if preset.revsig_beta is not None
        else ReverseSigmoid.calibrated_beta(setup.clean_test, setup.splits.test_y.numpy()),
        "am_tau": preset.am_tau if preset.am_tau is not None
        else AdaptiveMisinformation.calibrated_tau(setup.clean_test, mis_test, setup.splits.test_y.numpy()),
    }
    cache.put_json("calibration", setup.spec, params)
    return params


def build_defense(name: str, setup: Setup, eps: float = 1.0, seed: int = 0, **options: Any) -> Defense:
    """A fresh defense of kind `name` (a key of defenses.registry.DEFENSES) with this setup's parameters; `eps`
    is the L1 budget (Reverse Sigmoid's beta is calibrated to it, see Setup.revsig_beta); `options` go to the
    defense (ModelGuard-S's order)."""
    return defense_spec(name).build(setup, eps=eps, seed=seed, **options)
