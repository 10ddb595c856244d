"""Functional kernels behind the defenses and attacks."""

from .mgs import mgs_search

__all__ = ["mgs_search"]
