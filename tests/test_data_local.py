"""Loaders of the paper's datasets read local files and explain the layout they expect."""

import numpy as np
import pytest
import torch

from modelguard_fast.data.local import DatasetNotFoundError, load_local
from modelguard_fast.models import build_model


def test_missing_dataset_names_the_expected_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cifar10: .* not found\. Place the dataset .*cifar-10-batches-bin"):
        load_local("cifar10", tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"caltech256/256_ObjectCategories"):
        load_local("caltech256", tmp_path)
    with pytest.raises(ValueError, match=r"dataset must be one of cifar10, cifar100, svhn"):
        load_local("mnist", tmp_path)


def test_cifar_binary_records_are_read(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    pixels = rng.integers(0, 256, (5, 3072)).astype(np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(folder / "test_batch.bin")
    x, y = load_local("cifar10", tmp_path, split="test")
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), labels)
    np.testing.assert_allclose(x[2].numpy().reshape(-1), pixels[2] / 255.0, rtol=1e-6)
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="is not a CIFAR binary file"):
        load_local("cifar10", tmp_path, split="test")


def test_image_folders_are_read_in_class_order(tmp_path):
    from PIL import Image

    root = tmp_path / "indoor67" / "Images"
    for i, name in enumerate(["bar", "airport"]):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((10, 12, 3), 40 * i, dtype=np.uint8)).save(root / name / "a.jpg")
    x, y = load_local("indoor67", tmp_path, size=16)
    assert x.shape == (2, 3, 16, 16)
    assert y.tolist() == [0, 1]  # "airport" sorts first
    assert float(x[1].mean()) < 0.01 < float(x[0].mean())


@pytest.mark.parametrize("arch,size", [("resnet50", 64), ("vgg16_bn", 32)])
def test_paper_architectures_build_without_downloads(arch, size):
    model = build_model(arch, 7, 3)
    assert model(torch.rand(2, 3, size, size)).shape == (2, 7)
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_model("resnet18", 7, 3)
