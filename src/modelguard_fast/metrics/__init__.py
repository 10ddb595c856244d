"""Metrics for defenses and attacks."""

from .utility import UtilityMetrics, evaluate_utility, utility_metrics

__all__ = ["UtilityMetrics", "evaluate_utility", "utility_metrics"]
