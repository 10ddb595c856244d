"""The defenses the library knows by key: class, table label, and how to build one for an L1 budget.

The experiments, their tables and plots, and the command line read keys,
labels and help text from DEFENSES; a new defense is added here, once.
Keys are the short names of the paper's tables: none, revsig, mad, am, top1,
rounding, mgw, mgs (Section 4.1 lists the baselines, Sections 3.2 and 3.3 the
two ModelGuard defenses).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol

from ..defense import Defense
from .adaptive_misinformation import AdaptiveMisinformation
from .mad import MAD
from .modelguard_s import ModelGuardS
from .modelguard_w import ModelGuardW
from .none import NoDefense
from .reverse_sigmoid import ReverseSigmoid
from .rounding import Rounding
from .top1 import Top1


class DefenseContext(Protocol):
    """What building a defense for an experiment may need (experiments.setup.Setup provides it)."""

    num_classes: int
    target: Any  # the protected model (MAD's surrogate is a re-initialised copy of it)
    misinformation: Any  # Adaptive Misinformation's model, or None
    params: dict[str, float]  # calibrated parameters: "am_tau" (and "revsig_beta" at budget 1.0)

    def revsig_beta(self, max_l1: float) -> float:
        """Reverse Sigmoid's beta calibrated to the L1 budget (ReverseSigmoid.calibrated_beta)."""


@dataclass(frozen=True)
class DefenseSpec:
    """One defense the library can build by key.

    key: the short name (tables, configuration files, the command line);
    cls: its class (its `name` is the table label); help: one line for
    help texts; budgeted: it has an L1 budget (eps), directly or through a
    calibrated parameter, so the privacy-utility sweep varies it;
    needs_misinformation: it needs the context's misinformation model.
    """

    key: str
    cls: type
    help: str
    make: Callable[..., Defense]
    budgeted: bool = False
    needs_misinformation: bool = False

    @property
    def label(self) -> str:
        """The defense's name in tables and plots (the class's `name`)."""
        return self.cls.name

    def build(self, context: DefenseContext, eps: float = 1.0, seed: int = 0, **options: Any) -> Defense:
        """A fresh defense for `context` at L1 budget `eps` (in [0, 2]); `seed` seeds what is random in
        building it (MAD's surrogate); `options` go to the constructor where it takes them (ModelGuard-S's
        order). Raises ValueError when the context lacks what the defense needs."""
        if self.needs_misinformation and context.misinformation is None:
            raise ValueError(f"defense {self.key!r} needs a misinformation model, which this setup lacks (a user's "
                             f"setup without outliers or training data); leave {self.key!r} out")
        return self.make(context, eps, seed, **options)


_DEFENSES: dict[str, DefenseSpec] = {}
#: Every registered defense by key, in table order.
DEFENSES: Mapping[str, DefenseSpec] = MappingProxyType(_DEFENSES)


def register(spec: DefenseSpec) -> DefenseSpec:
    """Adds a defense to DEFENSES (at the end of the table order); a key already taken is refused."""
    if not isinstance(spec, DefenseSpec):
        raise TypeError(f"spec must be a DefenseSpec, got {type(spec).__name__}")
    if spec.key in _DEFENSES:
        raise ValueError(f"a defense with key {spec.key!r} is already registered ({_DEFENSES[spec.key].cls.__name__})")
    _DEFENSES[spec.key] = spec
    return spec


def defense_spec(key: str) -> DefenseSpec:
    """The DefenseSpec of `key`; ValueError listing the keys for an unknown one."""
    if not isinstance(key, str) or key not in _DEFENSES:
        raise ValueError(f"defense must be one of {', '.join(_DEFENSES)}; got {key!r}")
    return _DEFENSES[key]


for _spec in (
    DefenseSpec("none", NoDefense, "no defense (the clean predictions)", lambda ctx, eps, seed: NoDefense()),
    DefenseSpec("revsig", ReverseSigmoid, "Reverse Sigmoid, beta calibrated to the L1 budget",
                lambda ctx, eps, seed: ReverseSigmoid(ctx.revsig_beta(eps)), budgeted=True),
    DefenseSpec("mad", MAD, "MAD (prediction poisoning) with a random surrogate",
                lambda ctx, eps, seed: MAD.from_target(ctx.target, seed=seed, eps=eps), budgeted=True),
    DefenseSpec("am", AdaptiveMisinformation, "Adaptive Misinformation, tau calibrated",
                lambda ctx, eps, seed: AdaptiveMisinformation(ctx.params["am_tau"],
                                                              misinformation_model=ctx.misinformation),
                needs_misinformation=True),
    DefenseSpec("top1", Top1, "the top-1 label only", lambda ctx, eps, seed: Top1()),
    DefenseSpec("rounding", Rounding, "rounding to one decimal", lambda ctx, eps, seed: Rounding(decimals=1)),
    DefenseSpec("mgw", ModelGuardW, "ModelGuard-W (the per-prediction LP)",
                lambda ctx, eps, seed: ModelGuardW(eps=eps), budgeted=True),
    DefenseSpec("mgs", ModelGuardS, "ModelGuard-S (ordered incremental quantization)",
                lambda ctx, eps, seed, order="first": ModelGuardS(ctx.num_classes, eps=eps, order=order),
                budgeted=True),
):
    register(_spec)
del _spec
