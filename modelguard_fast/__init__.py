"""modelguard_fast: fast, durable defenses against model extraction, and the attacks that test them."""

from . import ops
from ._backend import cuda_available, cuda_built
from .defenses.base import Defense
from .defenses.modelguard_s import ModelGuardS
from .defenses.modelguard_s_frozen import FrozenModelGuardS
from .defenses.modelguard_w import ModelGuardW
from .persistence import JournalError, SnapshotError

__version__ = "0.1.0"

__all__ = [
    "Defense",
    "FrozenModelGuardS",
    "JournalError",
    "ModelGuardS",
    "ModelGuardW",
    "SnapshotError",
    "cuda_available",
    "cuda_built",
    "ops",
]
