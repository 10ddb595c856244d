"""Model factories for targets, substitutes and surrogates (randomly initialised; nothing is downloaded)."""

from __future__ import annotations

from torch import nn

from .resnet import ResNet50
from .small_cnn import SmallCNN
from .vgg import VGG16BN

ARCHITECTURES = {"small_cnn": SmallCNN, "resnet50": ResNet50, "vgg16_bn": VGG16BN}


def build_model(architecture: str, num_classes: int, in_channels: int) -> nn.Module:
    """A fresh model of `architecture` (one of ARCHITECTURES); seed torch before calling for reproducibility."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; got {architecture!r}")
    return ARCHITECTURES[architecture](num_classes=num_classes, in_channels=in_channels)


__all__ = ["ARCHITECTURES", "ResNet50", "SmallCNN", "VGG16BN", "build_model"]
