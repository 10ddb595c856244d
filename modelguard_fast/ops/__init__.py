"""Functional kernels behind the defenses and attacks."""

from .mgs import mgs_search
from .mgw import solve_mgw

__all__ = ["mgs_search", "solve_mgw"]
