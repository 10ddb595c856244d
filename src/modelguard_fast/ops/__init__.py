"""Functional kernels behind the defenses and attacks."""

from .bayes import BayesTable, bayes_recover
from .mgs import mgs_search
from .mgw import solve_mgw

__all__ = ["BayesTable", "bayes_recover", "mgs_search", "solve_mgw"]
