"""The pipeline on a paper dataset read from a local root (tiny stand-in files: CIFAR10, TinyImageNet, SVHN)."""

import json

import numpy as np
import pytest

from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.main import run_experiment


def write_cifar10(root, rng, per_batch=8, test=16):
    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [*[(f"data_batch_{i}.bin", per_batch) for i in range(1, 6)], ("test_batch.bin", test)]:
        labels = np.arange(n, dtype=np.uint8) % 10
        np.concatenate([labels[:, None], rng.integers(0, 256, (n, 3072), dtype=np.uint8)], axis=1).tofile(folder / name)


def write_tinyimagenet(root, rng, classes=2, per_class=6):
    from PIL import Image

    for c in range(classes):
        folder = root / "tinyimagenet" / "tiny-imagenet-200" / "train" / f"n0{c}" / "images"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")


def write_svhn(root, rng, n=20):
    from scipy.io import savemat

    (root / "svhn").mkdir()
    savemat(root / "svhn" / "train_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                 "y": (np.arange(n) % 10 + 1)[:, None]})


def test_cifar10_from_a_local_root_runs_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    write_cifar10(root, rng)
    write_tinyimagenet(root, rng)
    write_svhn(root, rng)
    config = RunConfig.load(dataset="cifar10", data_root=str(root), results_dir=str(tmp_path / "results"),
                            budget=8, target_epochs=1, workers=1, defenses=["none", "mgs"], queries=["knockoff"],
                            strategies=["naive", "ddae"],
                            attack={"epochs": 1, "batch_size": 4, "ddae_shadow_models": 1, "ddae_shadow_epochs": 1,
                                    "restorer_epochs": 1, "restorer_batch_size": 4})
    assert config.attack_config().lr == 0.1  # AttackConfig.paper("cifar10") is the base for CIFAR
    run_experiment(config, progress=False)
    record = json.loads((tmp_path / "results" / "cifar10" / "table.json").read_text())
    assert [row[0] for row in record["rows"]] == ["None", "ModelGuard-S"]
    assert all(0 <= c["accuracy"] <= 1 for c in record["cells"])
    assert record["calibrated"]["revsig_beta"] == 0.21  # the paper's CIFAR10 value
    assert record["config"]["data_root"] == str(root)


def test_a_local_dataset_needs_its_root(tmp_path):
    with pytest.raises(ConfigError, match=r"run.dataset = 'cifar10' is read from a local folder: set run.data_root"):
        RunConfig.load(dataset="cifar10")
    with pytest.raises(ConfigError, match=r"run.dataset = 'caltech256' is not allowed; choose from 'digits'"):
        RunConfig.load(dataset="caltech256", data_root=str(tmp_path))
    config = RunConfig.load(dataset="cifar10", data_root=str(tmp_path), results_dir=str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match=r"cifar10: .* not found\. Place the dataset"):
        run_experiment(config, progress=False)
