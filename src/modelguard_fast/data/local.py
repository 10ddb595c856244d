"""Loaders for the paper's datasets from a local folder (nothing is downloaded).

Each loader reads the dataset's own distribution format under `root` and
raises DatasetNotFoundError naming the layout it expects when files are
missing. Images come back as float32 tensors (N, 3, H, W) in [0, 1] and labels
as int64 tensors; folder datasets are resized to `size` x `size`.

Expected layouts (under `root`):

    cifar10/    cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin      (the "binary version")
    cifar100/   cifar-100-binary/{train,test}.bin                          (the "binary version")
    svhn/       {train,test}_32x32.mat                                     (format 2)
    tinyimagenet/ tiny-imagenet-200/train/<wnid>/images/*.JPEG
    caltech256/ 256_ObjectCategories/<nnn.name>/*.jpg
    cub200/     CUB_200_2011/images/<nnn.name>/*.jpg
    indoor67/   Images/<category>/*.jpg
    imagenet/   train/<wnid>/*.JPEG, val/<wnid>/*.JPEG
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader expects them."""


def _require(path: Path, dataset: str, layout: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(
            f"{dataset}: {path} not found. Place the dataset under the dataset root as {layout} "
            "(datasets are never downloaded)"
        )
    return path


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def _read_cifar_bin(files: list[Path], label_bytes: int, label_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    records = [np.fromfile(f, dtype=np.uint8) for f in files]
    width = label_bytes + 3072
    for f, r in zip(files, records):
        if r.size % width:
            raise ValueError(f"{f} is not a CIFAR binary file: {r.size} bytes is not a multiple of {width}")
    data = np.concatenate(records).reshape(-1, width)
    labels = data[:, label_index].astype(np.int64)
    return _to_tensor(data[:, label_bytes:].reshape(-1, 3, 32, 32)), torch.from_numpy(labels)


def load_cifar10(root: str | os.PathLike, split: str = "train"):
    folder = _require(Path(root) / "cifar10" / "cifar-10-batches-bin", "cifar10",
                      "cifar10/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    return _read_cifar_bin([_require(folder / n, "cifar10", str(folder / n)) for n in names], 1, 0)


def load_cifar100(root: str | os.PathLike, split: str = "train"):
    folder = _require(Path(root) / "cifar100" / "cifar-100-binary", "cifar100", "cifar100/cifar-100-binary/{train,test}.bin")
    name = "train.bin" if split == "train" else "test.bin"
    return _read_cifar_bin([_require(folder / name, "cifar100", str(folder / name))], 2, 1)  # fine labels


def load_svhn(root: str | os.PathLike, split: str = "train"):
    from scipy.io import loadmat

    path = _require(Path(root) / "svhn" / f"{split}_32x32.mat", "svhn", "svhn/{train,test}_32x32.mat")
    mat = loadmat(path)
    images = np.transpose(mat["X"], (3, 2, 0, 1))
    labels = mat["y"].reshape(-1).astype(np.int64) % 10  # SVHN stores digit 0 as label 10
    return _to_tensor(images), torch.from_numpy(labels)


def load_image_folder(folder: Path, size: int, limit_per_class: int | None = None):
    """Images of <folder>/<class>/**/<image>, classes in sorted order, resized to size x size RGB."""
    from PIL import Image

    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"{folder} holds no class folders")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit_per_class]
        for f in files:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
            labels.append(label)
    if not images:
        raise DatasetNotFoundError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _to_tensor(np.stack(images).transpose(0, 3, 1, 2)), torch.tensor(labels, dtype=torch.int64)


FOLDERS = {
    "tinyimagenet": ("tinyimagenet/tiny-imagenet-200/train", 64),
    "caltech256": ("caltech256/256_ObjectCategories", 224),
    "cub200": ("cub200/CUB_200_2011/images", 224),
    "indoor67": ("indoor67/Images", 224),
    "imagenet": ("imagenet/train", 224),
}


def load_local(name: str, root: str | os.PathLike, split: str = "train", size: int | None = None,
               limit_per_class: int | None = None):
    """(images, labels) of a paper dataset read from `root`; see the module docstring for layouts."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    readers = {"cifar10": load_cifar10, "cifar100": load_cifar100, "svhn": load_svhn}
    if name in readers:
        return readers[name](root, split)
    if name in FOLDERS:
        relative, default_size = FOLDERS[name]
        folder = _require(Path(root) / relative, name, relative + "/<class>/<images>")
        return load_image_folder(folder, size or default_size, limit_per_class)
    raise ValueError(f"dataset must be one of {', '.join([*readers, *FOLDERS])}; got {name!r}")
