"""modelguard_fast: fast, durable defenses against model extraction, and the attacks that test them."""

from . import attacks, ops, stores
from ._backend import available_backends, cuda_available, cuda_built, kernel_isa, kernel_threads
from .attacks import AttackConfig, AttackResult, run_attack
from .defenses.adaptive_misinformation import AdaptiveMisinformation
from .defense import Defense, DefenseStats
from .defenses.mad import MAD, random_surrogate
from .defenses.modelguard_s import CapacityError, ModelGuardS
from .defenses.modelguard_s_frozen import FrozenModelGuardS
from .defenses.modelguard_w import ModelGuardW
from .defenses.none import NoDefense
from .defenses.reverse_sigmoid import ReverseSigmoid
from .defenses.rounding import Rounding
from .defenses.top1 import Top1
from .guarded import GuardedModel
from .integrations import art_defended_classifier, art_postprocessor
from .metrics import UtilityMetrics, evaluate_utility, utility_metrics
from .persistence import JournalError, SnapshotError
from .stores import StoreError, StoreUnavailable

__version__ = "0.2.0"

__all__ = [
    "MAD",
    "AdaptiveMisinformation",
    "AttackConfig",
    "AttackResult",
    "CapacityError",
    "Defense",
    "DefenseStats",
    "FrozenModelGuardS",
    "GuardedModel",
    "JournalError",
    "ModelGuardS",
    "NoDefense",
    "ReverseSigmoid",
    "Rounding",
    "ModelGuardW",
    "SnapshotError",
    "StoreError",
    "StoreUnavailable",
    "Top1",
    "UtilityMetrics",
    "art_defended_classifier",
    "art_postprocessor",
    "attacks",
    "available_backends",
    "cuda_available",
    "cuda_built",
    "evaluate_utility",
    "kernel_isa",
    "kernel_threads",
    "ops",
    "random_surrogate",
    "run_attack",
    "stores",
    "utility_metrics",
]
