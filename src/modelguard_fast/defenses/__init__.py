"""Defenses: each maps clean predictions to defended ones under one interface."""

from ..defense import Defense
from .adaptive_misinformation import AdaptiveMisinformation
from .mad import MAD, random_surrogate
from .modelguard_s import ModelGuardS
from .modelguard_s_frozen import FrozenModelGuardS
from .modelguard_w import ModelGuardW
from .none import NoDefense
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .top1 import Top1

__all__ = ["AdaptiveMisinformation", "Defense", "FrozenModelGuardS", "MAD", "ModelGuardS", "ModelGuardW", "NoDefense",
           "ReverseSigmoid", "Rounding", "Top1", "random_surrogate"]
