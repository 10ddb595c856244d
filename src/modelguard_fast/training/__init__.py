"""Training loops and losses shared by targets, substitutes and defense models."""

from .fit import accuracy, fit, predict_proba, soft_cross_entropy
from .loop import train_loop
from .losses import misinformation_loss, outlier_exposure_loss

__all__ = ["accuracy", "fit", "misinformation_loss", "outlier_exposure_loss", "predict_proba", "soft_cross_entropy",
           "train_loop"]
