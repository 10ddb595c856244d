"""Outlier images for Outlier Exposure on the bundled datasets.

The paper trains targets with Outlier Exposure on a second natural-image set
(SVHN for CIFAR, Indoor67 for Caltech/CUB). Nothing can be downloaded here, so
for the bundled digit datasets we use grey-scale patches cut at random from the
two photographs that ship with scikit-learn (`load_sample_images`): natural
images with no digits in them, i.e. genuinely out of distribution.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_image_patches(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n grey-scale patches (n, 1, size, size) in [0, 1], from random crops at random scales."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(im).convert("L") for im in load_sample_images().images]
    rng = np.random.default_rng(seed)
    patches = np.empty((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.size) // 2))
        left = int(rng.integers(0, photo.size[0] - side))
        top = int(rng.integers(0, photo.size[1] - side))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        patches[i, 0] = np.asarray(crop, dtype=np.float32) / 255.0
    return torch.from_numpy(patches)
