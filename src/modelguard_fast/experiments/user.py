"""Your own data and model in the evaluation pipeline: user_setup() builds the Setup that run_experiment,
run_sweep_experiment and the studies take in place of a named dataset.

    setup = user_setup(test=(test_x, test_y), pool=pool_x, target=my_classifier, model=MyNet)
    print(run_experiment(RunConfig(budget=500, workers=1), setup=setup))

What each input is for:

- test (required): the target's test set; extraction accuracy and fidelity are measured on it,
  and the baselines (Reverse Sigmoid's beta, AM's tau) are calibrated on the target's predictions of it.
- pool (required): the attacker's natural query images, disjoint from the target's training set.
  With labels (x, y), D-DAE can train its shadow models; without, the "ddae" attack is left out.
- target: your trained classifier (an nn.Module returning logits). Without it, one is trained from
  `train` with `model` (with Outlier Exposure on `outliers`, when given).
- model: a factory (no arguments) of a fresh, untrained model of the target's architecture, for the
  attacker's substitutes and D-DAE's shadow models (and the target, when it is trained here).
  Default: SmallCNN for images (N, C, H, W). With worker processes (workers > 1) or Ray it must
  pickle: a module-level class or function, not a lambda.
- train: the target's training set; needed to train the target, and for AM's misinformation model.
- outliers: out-of-distribution images (as the paper's Outlier Exposure sets). Adaptive
  Misinformation needs them (and `train`, for its misinformation model): without them AM is
  left out, with a note.

Arrays are numpy arrays or torch tensors, batch first (images float in [0, 1] for the bundled
models, labels integers 0..C-1); any torch Dataset of (x, y) pairs (or of x alone, for pool and
outliers) is read whole into memory, as the pipeline holds every image. Cache keys include a
SHA-256 of the data, of the target's weights and of the model factory's architecture, so two
users' runs never share cells.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.bundled import Splits
from ..defenses.adaptive_misinformation import AdaptiveMisinformation
from ..defenses.reverse_sigmoid import ReverseSigmoid
from ..models import SmallCNN
from ..training import predict_proba
from ..training.fit import fit
from ..training.target import train_misinformation_model, train_with_outlier_exposure
from .cache import Cache
from .setup import Setup
from .threads import single_threaded

log = logging.getLogger(__name__)


def _tensor(value: Any, name: str, labels: bool = False) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    if len(value) == 0 or value.ndim < 1:
        raise ValueError(f"{name} must not be empty (batch first), got shape {tuple(value.shape)}")
    if labels:
        if value.ndim != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D integer tensor of labels, got {value.dtype} of shape "
                             f"{tuple(value.shape)}")
        return value.long().cpu()
    if not value.dtype.is_floating_point:
        raise ValueError(f"{name} must hold floating-point inputs, got {value.dtype}")
    return value.float().cpu()


def _dataset(data: Dataset, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    items = [data[i] for i in range(len(data))]
    if not items:
        raise ValueError(f"{name} must not be an empty dataset")
    if isinstance(items[0], (tuple, list)):  # (x, y, ...) pairs, or (x,) as TensorDataset(x) gives
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        return x, (torch.as_tensor([int(item[1]) for item in items]) if len(items[0]) > 1 else None)
    return torch.stack([torch.as_tensor(x) for x in items]), None


def _split(data: Any, name: str, need_labels: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(inputs, labels or None) from (x, y), x alone (when labels are optional) or a torch Dataset."""
    if isinstance(data, Dataset):
        x, y = _dataset(data, name)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif not need_labels and isinstance(data, (np.ndarray, torch.Tensor)):
        x, y = data, None
    else:
        expected = "(inputs, labels) or a torch Dataset of (x, y)" if need_labels else \
            "inputs, (inputs, labels) or a torch Dataset"
        raise TypeError(f"{name} must be {expected}, got {type(data).__name__}")
    x = _tensor(x, f"{name} inputs")
    if y is None:
        if need_labels:
            raise ValueError(f"{name} needs labels: pass (inputs, labels) or a Dataset of (x, y) pairs")
        return x, None
    y = _tensor(y, f"{name} labels", labels=True)
    if len(y) != len(x):
        raise ValueError(f"{name} labels must be one per input: {len(x)} inputs, got {len(y)} labels")
    return x, y


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(str((tuple(part.shape), str(part.dtype))).encode())
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(part, nn.Module):
            for key, value in part.state_dict().items():
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:32]


def user_setup(test: Any, pool: Any, *, target: nn.Module | None = None,
               model: Callable[[], nn.Module] | None = None, train: Any = None, outliers: Any = None,
               num_classes: int | None = None, name: str = "user", cache: Cache | None = None,
               device: str = "cpu", seed: int = 0, target_epochs: int = 30, oe_weight: float = 1.0) -> Setup:
    """A Setup (data, target, AM's misinformation model, calibrated baselines) of your own data and model.

    Args (see the module docstring for what each is for):
        test: (x, y) or a torch Dataset; x (N, ...) float, y (N,) integer labels 0..C-1.
        pool: x, (x, y) or a torch Dataset: the attacker's natural images (labels only for D-DAE).
        target: your trained classifier returning logits; None: trained here from `train` with `model`.
        model: factory of fresh models of the target's architecture (substitutes, shadow models,
            and the target when trained here); default SmallCNN(num_classes, channels) for images.
        train: (x, y) or a Dataset: the target's training set (to train it, and AM's misinformation model).
        outliers: x or a Dataset of OOD inputs (Outlier Exposure, and what AM needs); None: no AM.
        num_classes: default: the largest label of train/test plus one, or the target's output width.
        name: the name of the results folder (results/<name>/) and of the setup in cache keys.
        cache: where the trained target and misinformation model are kept (None: not kept).
        device, seed, target_epochs, oe_weight: as for the named datasets (experiments.setup.prepare).

    Raises TypeError / ValueError naming the argument, what was expected and what was received.
    """
    test_x, test_y = _split(test, "test", need_labels=True)
    pool_x, pool_y = _split(pool, "pool", need_labels=False)
    train_x, train_y = _split(train, "train", need_labels=True) if train is not None else (None, None)
    outlier_x = _split(outliers, "outliers", need_labels=False)[0] if outliers is not None else None
    for label, x in (("pool", pool_x), ("train", train_x), ("outliers", outlier_x)):
        if x is not None and x.shape[1:] != test_x.shape[1:]:
            raise ValueError(f"{label} inputs must have the test inputs' shape {tuple(test_x.shape[1:])}, got "
                             f"{tuple(x.shape[1:])}")
    if target is not None and not isinstance(target, nn.Module):
        raise TypeError(f"target must be a torch.nn.Module (your trained classifier), got {type(target).__name__}")
    if model is not None and not callable(model):
        raise TypeError(f"model must be a factory of fresh models (a class or function), got {model!r}")
    if target is None and (model is None or train_x is None):
        raise ValueError("without target, pass model (a factory) and train (x, y): the target is trained here")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a non-empty folder name, got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    labels = [y for y in (test_y, pool_y, train_y) if y is not None]
    if num_classes is None:
        num_classes = int(max(int(y.max()) for y in labels)) + 1
        if target is not None:
            with torch.no_grad():
                num_classes = max(num_classes, predict_proba(target, test_x[:1]).shape[1])
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    for label, y in (("test", test_y), ("pool", pool_y), ("train", train_y)):
        if y is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{label} labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    if model is None:
        if test_x.ndim != 4:
            raise ValueError("the default model (SmallCNN) needs images (N, channels, H, W); pass model= for inputs "
                             f"of shape {tuple(test_x.shape[1:])}")
        model = _SmallCNNFactory(num_classes, test_x.shape[1])
    architecture = repr(model())
    splits = Splits(name, num_classes, train_x if train_x is not None else test_x[:0],
                    train_y if train_y is not None else test_y[:0], test_x, test_y, pool_x, pool_y)
    spec = {"dataset": name, "seed": seed, "data": _digest(test_x, test_y, pool_x, pool_y, train_x, train_y,
                                                             outlier_x), "architecture": architecture}
    if target is None:
        spec.update(target_epochs=target_epochs, oe_weight=oe_weight)
        target = _trained(model, spec, "target", cache, device, seed, lambda m: _train_target(
            m, train_x, train_y, outlier_x, target_epochs, oe_weight, seed))
    spec["target"] = _digest(target)
    target = target.to(device).eval().requires_grad_(False)
    misinformation = None
    if outlier_x is not None and train_x is not None:
        misinformation = _trained(model, {**spec, "target_epochs": target_epochs}, "misinformation", cache, device,
                                  seed + 1, lambda m: train_misinformation_model(m, train_x, train_y,
                                                                                 epochs=target_epochs, seed=seed))
        misinformation = misinformation.to(device).eval().requires_grad_(False)
    elif outlier_x is not None:
        log.warning("AM is left out: its misinformation model trains on the target's training set (pass train)")
    clean_test = predict_proba(target, test_x).cpu().numpy().astype(np.float64)
    setup = Setup(name, splits, target, misinformation, outlier_x, clean_test, spec, None, factory=model)
    setup.params = {"revsig_beta": ReverseSigmoid.calibrated_beta(clean_test, test_y.numpy())}
    if misinformation is not None:
        mis_test = predict_proba(misinformation, test_x).cpu().numpy().astype(np.float64)
        setup.params["am_tau"] = AdaptiveMisinformation.calibrated_tau(clean_test, mis_test, test_y.numpy())
    return setup


class _SmallCNNFactory:
    """SmallCNN(num_classes, in_channels) on each call (a picklable factory)."""

    def __init__(self, num_classes: int, in_channels: int):
        self.num_classes, self.in_channels = num_classes, in_channels

    def __call__(self) -> nn.Module:
        return SmallCNN(self.num_classes, in_channels=self.in_channels)


def _train_target(model: nn.Module, x, y, outliers, epochs: int, oe_weight: float, seed: int) -> None:
    if outliers is not None:
        train_with_outlier_exposure(model, x, y, outliers, epochs=epochs, oe_weight=oe_weight, seed=seed)
    else:
        fit(model, x, y, epochs=epochs, seed=seed)


def _trained(factory, spec: dict[str, Any], kind: str, cache: Cache | None, device: str, seed: int, train) -> nn.Module:
    """A model from `factory`, seeded, loaded from `cache` or trained by `train(model)` and cached."""
    torch.manual_seed(seed)
    model = factory().to(device)
    if cache is None or not cache.load_weights(kind, spec, model):
        log.info("training the %s model", kind)
        with single_threaded():
            train(model)
        if cache is not None:
            cache.save_weights(kind, spec, model)
    return model
