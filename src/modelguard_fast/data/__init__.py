"""Datasets: bundled ones that ship with installed packages, and loaders for local copies of the paper's."""

from .bundled import Splits, load_bundled

__all__ = ["Splits", "load_bundled"]
