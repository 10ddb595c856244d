"""Per-dataset settings: architectures, training sizes and the baselines' utility parameters.

The paper's datasets use its values (Tables 1 and Appendix B.2). For the
bundled datasets, Reverse Sigmoid's beta and Adaptive Misinformation's tau are
None, meaning "calibrate on the defender's own test predictions as the paper
chose them": beta so that the largest L1 distortion is about 1.0, tau as the
largest value that keeps protected accuracy within 1 point of the clean
accuracy (ReverseSigmoid.calibrated_beta, AdaptiveMisinformation.calibrated_tau).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetPreset:
    architecture: str
    in_channels: int
    num_classes: int
    pool: str  # the attacker's natural query data
    outliers: str  # Outlier Exposure data
    revsig_beta: float | None
    am_tau: float | None


PRESETS = {
    "digits": DatasetPreset("small_cnn", 1, 10, "bundled split", "sklearn photo patches", None, None),
    "mnist5k": DatasetPreset("small_cnn", 1, 10, "bundled split", "sklearn photo patches", None, None),
    "cifar10": DatasetPreset("vgg16_bn", 3, 10, "tinyimagenet", "svhn", 0.21, 0.7),
    "cifar100": DatasetPreset("vgg16_bn", 3, 100, "tinyimagenet", "svhn", 0.02, 0.4),
    "cub200": DatasetPreset("resnet50", 3, 200, "imagenet", "indoor67", 0.011, 0.3),
    "caltech256": DatasetPreset("resnet50", 3, 256, "imagenet", "indoor67", 0.008, 0.25),
}

#: The datasets `modelguard-fast run` prepares: the bundled ones, and CIFAR10/100 from a local root (their
#: pool, TinyImageNet at 32 x 32, and outliers, SVHN, fit in memory; the ImageNet-pool datasets do not).
PIPELINE_DATASETS = ("digits", "mnist5k", "cifar10", "cifar100")
