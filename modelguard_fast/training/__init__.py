"""Training pieces the defenses need (losses for Adaptive Misinformation's models)."""

from .losses import misinformation_loss, outlier_exposure_loss

__all__ = ["misinformation_loss", "outlier_exposure_loss"]
