"""Settings of the attacks: one validated, documented record with the paper's values as defaults."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

BAYES_MEANS = ("clean", "received")
#: Tables of settings (TOML's [attack.jbda], a nested mapping in from_dict), each standing for the fields
#: with its name as prefix: {"jbda": {"seed_size": 100}} is jbda_seed_size = 100.
SECTIONS = ("jbda", "s4l", "smoothing", "ddae", "restorer", "bayes")
PAPER_DATASETS = ("caltech256", "cub200", "cifar100", "cifar10")


@dataclass(frozen=True)
class AttackConfig:
    """Every setting of an attack. The defaults are the paper's (Section 4.1, Appendix B.1 and
    the "Hyperparameters" paragraphs; substitute settings of its CIFAR experiments); use
    AttackConfig.paper(dataset) for the exact per-dataset values and AttackConfig.small() for
    the bundled datasets (hundreds of queries, minutes on a laptop CPU).

    Where a value comes from: "paper" is the ModelGuard paper (Section 4.1, Appendix B.1);
    "public code" is the paper's public code (its training scripts), used where the paper
    does not state a value or where the two differ.

    Substitute training (the one routine every attack ends in: soft-label cross-entropy, SGD):
        epochs: training epochs (paper: 30).
        batch_size: minibatch size (paper: 128 for CIFAR, 32 for Caltech256/CUB200).
        lr: initial learning rate (paper: 0.1 for CIFAR, 0.01 for Caltech256/CUB200).
        momentum: SGD momentum (paper: 0.5).
        weight_decay: SGD weight decay of KnockoffNets substitutes (public code: none, 0.0;
            the paper does not state it).
        jbda_weight_decay: SGD weight decay of JBDA-TR substitutes, the intermediate rounds'
            and the final one (public code: 5e-4).
        lr_step: epochs between learning-rate decays (paper: 10).
        lr_gamma: learning-rate factor at each decay (paper: 0.5).

    Querying:
        query_seed: seed of the permutation of the attacker's pool that fixes which images are
            queried, and in which order (paper: the same images for every attack and defense;
            the public code uses 42). Kept apart from the attack's seed on purpose.
        query_batch_size: images per oracle call and per forward pass of the target.
            ModelGuard-S answers a batch as it would row by row, but the target's own
            arithmetic may change in the last bits with the batch size: keep it fixed
            across runs that must ask exactly the same predictions.
        qpi: m of m-QPI: every image is queried m times, in m passes over the query set,
            and the answers averaged (1: a single query, the Naive attack).

    JBDA-TR:
        jbda_seed_size: natural seed images (paper: 1,000), the first of the permuted pool.
        jbda_new_per_sample: new synthetic images per image and round (paper: 3).
        jbda_steps: I-FGSM steps (paper: 8).
        jbda_eps: L-infinity bound of the perturbation around the image it starts from (paper: 0.1).
        jbda_step_size: I-FGSM step; None gives jbda_eps * 1.85 / jbda_steps (the paper's).
        jbda_input_range: (low, high) the synthetic images are clipped to, or None for no
            clipping; (0, 1) suits images scaled to [0, 1], like the bundled datasets.
        jbda_round_epochs: epochs of each intermediate round's substitute; None uses `epochs`.

    S4L:
        s4l_weight: weight of the rotation-prediction loss (paper: 1.0).

    Smoothing:
        smoothing_copies: augmented copies queried per image (paper: 3).
        smoothing_crop_padding: zero padding of the random crop, in pixels; None gives
            max(1, H // 8) (4 for 32 x 32 images, as is usual for CIFAR; 1 for 8 x 8 digits).
        smoothing_flip: flip horizontally with probability 1/2 (paper: yes; on digits a flip
            makes a different-looking image, but it is the paper's augmentation).

    D-DAE (shadow models and the restorer; D-DAE+ uses the restorer settings too):
        ddae_shadow_models: shadow models S (paper: 20); S times the number of queried images
            pairs train the restorer (paper: 20 x 50,000 = 1,000,000).
        ddae_shadow_classes: pool classes each shadow model learns (a random subset, mapped to
            random output classes); None gives min(C, number of pool classes).
        ddae_shadow_samples: cap on a shadow model's training images (a random sample of the
            pool images of its classes); None uses them all.
        ddae_shadow_epochs: training epochs of each shadow model (public code: 5; the paper
            does not state the shadow models' settings).
        ddae_shadow_batch_size: 64; ddae_shadow_lr: 0.01; ddae_shadow_momentum: 0.5;
        ddae_shadow_weight_decay: 5e-4; ddae_shadow_lr_step: 3 (epochs); ddae_shadow_lr_gamma:
            0.5 (SGD, the public code's shadow-model settings; there the shadow models are
            ImageNet-pretrained AlexNets, here the substitute's architecture).
        restorer_hidden: (h1, h2) of the restorer MLP; None follows the paper's table (128/64 at
            C = 10, 1024/512 at C = 100, 2048/1024 at C = 200 and 256), i.e. h1 = the power of
            two nearest to 10 C in log scale and h2 = h1 / 2 (which also gives the public code's
            512/256 at C = 43).
        restorer_epochs: 200; restorer_batch_size: 1024; restorer_lr: 0.01;
        restorer_momentum: 0.9; restorer_weight_decay: 1e-4; restorer_lr_step: 100 (epochs);
        restorer_lr_gamma: 0.5 (the paper's restorer schedule).

    Partial Bayes (the table also trains the D-DAE+ restorer):
        bayes_table_size: rows drawn, before rows beyond eps are dropped (paper: 1,000,000);
            K = bayes_table_size // (number of queried images) draws per image, at least 1.
        bayes_precision_factor: the Dirichlet precision s is this times C (paper: 8).
        bayes_means: "clean" (the paper's, Appendix B.1 and its Remark 5: each draw's mean is
            the target's clean prediction of a queried image, a strengthening of the attacker
            who still does not know which image an answer belongs to) or "received" (the
            attacker's own estimate: the answers it received, rescaled to sum to 1; an answer
            of all zeros, which Rounding gives at C > 20, draws around the uniform mean).
        bayes_delta: the matcher's tolerance floor delta (paper: 0.01).
        bayes_top1_filter: match only table rows of the received top-1 class; None uses it
            exactly when the defense preserves top-1.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.5
    weight_decay: float = 0.0
    jbda_weight_decay: float = 5e-4
    lr_step: int = 10
    lr_gamma: float = 0.5

    query_seed: int = 42
    query_batch_size: int = 256
    qpi: int = 1

    jbda_seed_size: int = 1000
    jbda_new_per_sample: int = 3
    jbda_steps: int = 8
    jbda_eps: float = 0.1
    jbda_step_size: Optional[float] = None
    jbda_input_range: Optional[Tuple[float, float]] = (0.0, 1.0)
    jbda_round_epochs: Optional[int] = None

    s4l_weight: float = 1.0

    smoothing_copies: int = 3
    smoothing_crop_padding: Optional[int] = None
    smoothing_flip: bool = True

    ddae_shadow_models: int = 20
    ddae_shadow_classes: Optional[int] = None
    ddae_shadow_samples: Optional[int] = None
    ddae_shadow_epochs: int = 5
    ddae_shadow_batch_size: int = 64
    ddae_shadow_lr: float = 0.01
    ddae_shadow_momentum: float = 0.5
    ddae_shadow_weight_decay: float = 5e-4
    ddae_shadow_lr_step: int = 3
    ddae_shadow_lr_gamma: float = 0.5
    restorer_hidden: Optional[Tuple[int, int]] = None
    restorer_epochs: int = 200
    restorer_batch_size: int = 1024
    restorer_lr: float = 0.01
    restorer_momentum: float = 0.9
    restorer_weight_decay: float = 1e-4
    restorer_lr_step: int = 100
    restorer_lr_gamma: float = 0.5

    bayes_table_size: int = 1_000_000
    bayes_precision_factor: float = 8.0
    bayes_means: str = "clean"
    bayes_delta: float = 0.01
    bayes_top1_filter: Optional[bool] = None

    def __post_init__(self) -> None:
        for name, rule in _RULES.items():
            rule(name, getattr(self, name))
        if isinstance(self.jbda_input_range, list):
            object.__setattr__(self, "jbda_input_range", tuple(self.jbda_input_range))
        if isinstance(self.restorer_hidden, list):
            object.__setattr__(self, "restorer_hidden", tuple(self.restorer_hidden))

    # ------------------------------------------------------------ presets
    @classmethod
    def paper(cls, dataset: str = "cifar10", **changes: Any) -> "AttackConfig":
        """The paper's settings for one of its datasets (only the substitute's lr and batch size differ),
        with the public code's values where the paper states none (see the class docstring)."""
        if dataset not in PAPER_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(repr(d) for d in PAPER_DATASETS)}; got {dataset!r}")
        imagenet_pool = dataset in ("caltech256", "cub200")
        base = cls(lr=0.01 if imagenet_pool else 0.1, batch_size=32 if imagenet_pool else 128)
        return base.replace(**changes)

    @classmethod
    def small(cls, **changes: Any) -> "AttackConfig":
        """Settings for the bundled datasets (hundreds of 8 x 8 or 28 x 28 images), sized so that the
        whole grid of the paper's table runs in minutes on two CPU cores: the paper's (CIFAR)
        settings with a smaller substitute batch (64), 100 JBDA-TR seed images whose intermediate
        rounds train 10 epochs, 5 shadow models, a 20,000-row Bayes table, a restorer trained 40
        epochs (batch 256, learning rate halved every 20), and no horizontal flip in Smoothing (a
        mirrored digit is another shape, often another class, so its answer would mislabel the
        image; the crop stays).

        Two settings differ from the public code's on purpose, to keep the default run's
        published table reproducible (they were chosen before the public code's values were
        read): KnockoffNets substitutes use weight decay 5e-4 (public code: none), and the
        shadow models train as the substitutes do (30 epochs, lr 0.1 halved every 10, batch 64,
        momentum 0.5, weight decay 5e-4; public code: 5 epochs, lr 0.01 halved every 3). Pass
        them to small() (e.g. small(weight_decay=0.0)) to change them."""
        base = cls(batch_size=64, query_batch_size=128, jbda_seed_size=100, jbda_round_epochs=10,
                   ddae_shadow_models=5, restorer_epochs=40, restorer_batch_size=256, restorer_lr_step=20,
                   bayes_table_size=20_000, smoothing_flip=False, weight_decay=5e-4, ddae_shadow_epochs=30,
                   ddae_shadow_batch_size=64, ddae_shadow_lr=0.1, ddae_shadow_lr_step=10)
        return base.replace(**changes)

    # ------------------------------------------------------------ conversions
    def replace(self, **changes: Any) -> "AttackConfig":
        """A copy with some fields changed (validated; unknown names are refused)."""
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "AttackConfig":
        """From a mapping such as a parsed JSON or TOML file: field names, or tables of SECTIONS
        (flatten_sections); unknown keys are refused."""
        if not isinstance(values, Mapping):
            raise TypeError(f"AttackConfig.from_dict takes a mapping, got {type(values).__name__}")
        values = flatten_sections(values)
        _check_keys(values)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Field values (tuples as lists), ready for JSON."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    # ------------------------------------------------------------ derived values
    @property
    def step_size(self) -> float:
        """The I-FGSM step of JBDA-TR."""
        return self.jbda_step_size if self.jbda_step_size is not None else self.jbda_eps * 1.85 / self.jbda_steps

    def crop_padding(self, image_height: int) -> int:
        return self.smoothing_crop_padding if self.smoothing_crop_padding is not None else max(1, image_height // 8)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(AttackConfig))


def flatten_sections(values: Mapping[str, Any], where: str = "attack") -> dict[str, Any]:
    """`values` with each table of SECTIONS replaced by the fields it stands for: {"ddae": {"shadow_models":
    5}} becomes {"ddae_shadow_models": 5}. Other keys are kept as they are. Raises ValueError for a key of a
    table that names no field, and for a field given both ways (`where` names the table in errors)."""
    allowed = field_names()
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key not in SECTIONS or not isinstance(value, Mapping):
            flat[key] = value
            continue
        for part, item in value.items():
            name = f"{key}_{part}"
            if name not in allowed:
                keys = [n[len(key) + 1:] for n in allowed if n.startswith(key + "_")]
                raise ValueError(f"unknown key {part!r} in [{where}.{key}]; allowed keys: {', '.join(keys)}")
            if name in values:
                raise ValueError(f"{name} is given twice, as [{where}] {name} and as [{where}.{key}] {part}; "
                                 "give it once")
            flat[name] = item
    return flat


def _check_keys(values: Mapping[str, Any]) -> None:
    allowed = field_names()
    for key in values:
        if key not in allowed:
            raise ValueError(f"unknown AttackConfig key {key!r}; allowed keys: {', '.join(allowed)}")


# ---------------------------------------------------------------- field rules
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class _Rule:
    """A field's rule, stated once: `test(value)` holds, or ValueError naming the field and `expected`."""

    expected: str
    test: Callable[[Any], bool]
    separator: str = ","

    def __call__(self, name: str, value: Any) -> None:
        if not self.test(value):
            raise ValueError(f"AttackConfig.{name} must be {self.expected}{self.separator} got {value!r}")

    def or_none(self) -> "_Rule":
        return _Rule(f"{self.expected} or None", lambda v: v is None or self.test(v))


def _int_at_least(low: int, expected: str) -> _Rule:
    return _Rule(expected, lambda v: _is_int(v) and v >= low)


def _real(expected: str, accept: Callable[[float], bool]) -> _Rule:
    return _Rule(expected, lambda v: _is_real(v) and accept(v))


def _optional_pair(expected: str, item: Callable[[Any], bool], ordered: bool) -> _Rule:
    return _Rule(f"None or a pair {expected}", lambda v: v is None or (
        isinstance(v, (tuple, list)) and len(v) == 2 and all(item(x) for x in v) and (not ordered or v[0] < v[1])))


def _one_of(allowed: tuple[str, ...]) -> _Rule:
    return _Rule(f"one of {', '.join(repr(a) for a in allowed)}", lambda v: isinstance(v, str) and v in allowed, ";")


_POSITIVE_INT = _int_at_least(1, "a positive integer")
_BATCH = _int_at_least(2, "an integer >= 2 (batch normalisation needs two rows per batch)")
_INT = _Rule("an integer", _is_int)
_POSITIVE = _real("a finite real number > 0", lambda v: v > 0)
_NON_NEGATIVE = _real("a finite real number >= 0", lambda v: v >= 0)
_MOMENTUM = _real("a real number in [0, 1)", lambda v: 0 <= v < 1)
_DECAY = _real("a real number in (0, 1]", lambda v: 0 < v <= 1)
_FLAG = _Rule("True or False", lambda v: isinstance(v, bool))

_RULES = {
    "epochs": _POSITIVE_INT, "batch_size": _POSITIVE_INT, "lr": _POSITIVE, "momentum": _MOMENTUM,
    "weight_decay": _NON_NEGATIVE, "jbda_weight_decay": _NON_NEGATIVE, "lr_step": _POSITIVE_INT, "lr_gamma": _DECAY,
    "query_seed": _INT, "query_batch_size": _POSITIVE_INT, "qpi": _POSITIVE_INT,
    "jbda_seed_size": _POSITIVE_INT, "jbda_new_per_sample": _POSITIVE_INT, "jbda_steps": _POSITIVE_INT,
    "jbda_eps": _POSITIVE, "jbda_step_size": _POSITIVE.or_none(),
    "jbda_input_range": _optional_pair("(low, high) of finite reals with low < high", _is_real, True),
    "jbda_round_epochs": _POSITIVE_INT.or_none(),
    "s4l_weight": _NON_NEGATIVE,
    "smoothing_copies": _POSITIVE_INT, "smoothing_crop_padding": _int_at_least(0, "an integer >= 0").or_none(),
    "smoothing_flip": _FLAG,
    "ddae_shadow_models": _POSITIVE_INT, "ddae_shadow_classes": _POSITIVE_INT.or_none(),
    "ddae_shadow_samples": _POSITIVE_INT.or_none(), "ddae_shadow_epochs": _POSITIVE_INT,
    "ddae_shadow_batch_size": _BATCH, "ddae_shadow_lr": _POSITIVE, "ddae_shadow_momentum": _MOMENTUM,
    "ddae_shadow_weight_decay": _NON_NEGATIVE, "ddae_shadow_lr_step": _POSITIVE_INT, "ddae_shadow_lr_gamma": _DECAY,
    "restorer_hidden": _optional_pair("(h1, h2) of positive integers", lambda v: _is_int(v) and v >= 1, False),
    "restorer_epochs": _POSITIVE_INT, "restorer_batch_size": _BATCH, "restorer_lr": _POSITIVE,
    "restorer_momentum": _MOMENTUM, "restorer_weight_decay": _NON_NEGATIVE, "restorer_lr_step": _POSITIVE_INT,
    "restorer_lr_gamma": _DECAY,
    "bayes_table_size": _POSITIVE_INT, "bayes_precision_factor": _POSITIVE, "bayes_means": _one_of(BAYES_MEANS),
    "bayes_delta": _NON_NEGATIVE, "bayes_top1_filter": _Rule("True, False or None", lambda v: v is None
                                                              or isinstance(v, bool)),
}
