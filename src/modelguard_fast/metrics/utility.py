"""What a defense costs its honest users: distortion and accuracy of the defended answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from .._arrays import to_numpy
from ..defense import Defense
from ..guarded import GuardedModel


@dataclass(frozen=True)
class UtilityMetrics:
    """Utility of a defense over a set of predictions.

    Attributes:
        num_samples: number of predictions.
        max_l1: largest L1 distance between a clean and a defended prediction.
        mean_l1: mean L1 distance.
        top1_changed: fraction of rows whose top-1 class changed (argmax, first index on ties).
        protected_accuracy: accuracy of the defended top-1 against the labels (None without labels).
        clean_accuracy: accuracy of the clean top-1 against the labels (None without labels).
    """

    num_samples: int
    max_l1: float
    mean_l1: float
    top1_changed: float
    protected_accuracy: float | None = None
    clean_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Accumulator:
    def __init__(self):
        self.n = 0
        self.max_l1 = 0.0
        self.sum_l1 = 0.0
        self.changed = 0
        self.labelled = None  # [clean correct, defended correct], once labels are seen

    def add(self, clean: np.ndarray, defended: np.ndarray, labels: np.ndarray | None) -> None:
        l1 = np.abs(clean.astype(np.float64) - defended.astype(np.float64)).sum(axis=1)
        clean_top, defended_top = clean.argmax(axis=1), defended.argmax(axis=1)
        self.n += clean.shape[0]
        self.max_l1 = max(self.max_l1, float(l1.max()))
        self.sum_l1 += float(l1.sum())
        self.changed += int((clean_top != defended_top).sum())
        if labels is not None:
            self.labelled = self.labelled or [0, 0]
            self.labelled[0] += int((clean_top == labels).sum())
            self.labelled[1] += int((defended_top == labels).sum())

    def result(self) -> UtilityMetrics:
        if self.n == 0:
            raise ValueError("no predictions to measure: the data was empty")
        acc = (None, None) if self.labelled is None else (self.labelled[1] / self.n, self.labelled[0] / self.n)
        return UtilityMetrics(self.n, self.max_l1, self.sum_l1 / self.n, self.changed / self.n, *acc)


def _rows(x: Any, name: str) -> np.ndarray:
    try:
        a = to_numpy(x)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0 or a.dtype.kind != "f":
        raise ValueError(f"{name} must be a non-empty float array of shape (C,) or (B, C), got "
                         f"{a.dtype} of shape {a.shape}")
    return a


def _labels(labels: Any, rows: int) -> np.ndarray:
    try:
        a = np.asarray(to_numpy(labels))
    except TypeError:  # a Python int or sequence
        a = np.asarray(labels)
    if a.ndim == 0:
        a = a[None]
    if a.shape != (rows,) or a.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices of shape ({rows},), got {a.dtype} of shape {a.shape}")
    return a


def utility_metrics(clean: Any, defended: Any, labels: Any = None) -> UtilityMetrics:
    """Distortion and accuracy of `defended` against `clean` predictions (numpy, torch or cupy arrays).

    Args:
        clean: the undefended predictions, (B, C) or (C,).
        defended: the defense's answers for them, same shape.
        labels: optional true classes (B,), for protected and clean accuracy.
    """
    c, d = _rows(clean, "clean"), _rows(defended, "defended")
    if c.shape != d.shape:
        raise ValueError(f"defended must have the shape of clean {c.shape}, got shape {d.shape}")
    acc = _Accumulator()
    acc.add(c, d, None if labels is None else _labels(labels, c.shape[0]))
    return acc.result()


def evaluate_utility(model: nn.Module, defense: Defense, data: Iterable, device: Any = None,
                     outputs: str = "logits", verbose: bool = False) -> UtilityMetrics:
    """Utility of `defense` in front of `model` over a dataset of (x, label) batches (e.g. a DataLoader).

    The model is run as GuardedModel(model, defense, outputs) runs it (its
    train/eval mode is left to the caller); the clean predictions are the
    model's softmax. Batches are moved to `device` when given.
    """
    guarded = GuardedModel(model, defense, outputs)
    acc = _Accumulator()
    for x, labels in tqdm(data, disable=not verbose, desc=f"utility of {defense.name}"):
        if device is not None:
            x = x.to(device)
        clean = guarded.probabilities(x)
        defended = defense.defend(clean, x)
        acc.add(to_numpy(clean), to_numpy(defended), _labels(labels, clean.shape[0]))
    return acc.result()
