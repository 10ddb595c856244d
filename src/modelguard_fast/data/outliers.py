"""Outlier images for Outlier Exposure on the bundled datasets, and a disjoint set to test OOD detection on.

The paper trains targets with Outlier Exposure on a second natural-image set
(SVHN for CIFAR, Indoor67 for Caltech/CUB). Nothing can be downloaded here, so
for the bundled digit datasets we use grey-scale patches cut at random from the
two photographs that ship with scikit-learn (`load_sample_images`): natural
images with no digits in them, i.e. genuinely out of distribution.

The paper tests OOD detection on yet another set (DTD or GTSRB), never seen in
training. `sample_ood_patches` plays that part: patches of the images that ship
with matplotlib (a portrait photograph and a terrain elevation map), which share
no pixel with the Outlier Exposure photographs.
"""

from __future__ import annotations

import numpy as np
import torch


def _patches(photos: list, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """n grey-scale patches (n, 1, size, size) in [0, 1], random crops at random scales of the PIL images."""
    from PIL import Image

    patches = np.empty((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.size) // 2))
        left = int(rng.integers(0, photo.size[0] - side))
        top = int(rng.integers(0, photo.size[1] - side))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        patches[i, 0] = np.asarray(crop, dtype=np.float32) / 255.0
    return torch.from_numpy(patches)


def sample_image_patches(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n grey-scale patches (n, 1, size, size) in [0, 1] of scikit-learn's two sample photographs."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(im).convert("L") for im in load_sample_images().images]
    return _patches(photos, n, size, np.random.default_rng(seed))


def sample_ood_patches(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n grey-scale patches (n, 1, size, size) in [0, 1] of matplotlib's sample photograph
    (grace_hopper.jpg) and elevation map (jacksboro_fault_dem.npz, scaled to [0, 255]):
    natural images disjoint from those of `sample_image_patches`."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        portrait = Image.open(f).convert("L")
    elevation = np.asarray(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"], dtype=np.float64)
    elevation = np.round(255 * (elevation - elevation.min()) / np.ptp(elevation)).astype(np.uint8)
    return _patches([portrait, Image.fromarray(elevation)], n, size, np.random.default_rng(seed))
