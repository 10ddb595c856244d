"""Training loops shared by targets, substitutes and attack models."""

from .fit import accuracy, fit, predict_proba

__all__ = ["accuracy", "fit", "predict_proba"]
