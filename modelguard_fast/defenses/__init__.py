"""Defenses: each maps clean predictions to defended ones under one interface."""

from .adaptive_misinformation import AdaptiveMisinformation
from .base import Defense
from .none import NoDefense
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .top1 import Top1

__all__ = ["AdaptiveMisinformation", "Defense", "NoDefense", "ReverseSigmoid", "Rounding", "Top1"]
