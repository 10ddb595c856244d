"""Model factories for targets, substitutes and surrogates."""

from .small_cnn import SmallCNN

__all__ = ["SmallCNN"]
