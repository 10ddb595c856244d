"""Defenses: each maps clean predictions to defended ones under one interface."""

from .adaptive_misinformation import AdaptiveMisinformation
from .base import Defense
from .mad import MAD, random_surrogate
from .none import NoDefense
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .top1 import Top1

__all__ = ["AdaptiveMisinformation", "Defense", "MAD", "NoDefense", "ReverseSigmoid", "Rounding", "Top1",
           "random_surrogate"]
