"""The parameters every defense shares, each with its rule stated once.

Every defense, ``modelguard_fast.ops``, the experiments, the CLI and the
config files check these values through the functions below, so a value is
accepted or refused the same way everywhere. Each function returns the
value as a plain Python number and raises TypeError (not a number, or a
bool) or ValueError (out of range), naming the argument, what is allowed and
what was received.

eps (the L1 distortion budget of ModelGuard-S, ModelGuard-W and MAD)
    A finite real in [0, 2], for every defense. 0 is well defined for all of
    them: no distortion is allowed, so ModelGuard-S merges only identical
    predictions, and ModelGuard-W and MAD answer y itself wherever that is
    feasible. 2 is the largest L1 distance between two probability vectors
    (||p - q||_1 <= ||p||_1 + ||q||_1 = 2), so a larger budget cannot mean
    more than 2 does; it is refused because it most likely is a unit error
    (a percentage, or an L2 or L-inf budget).

sum_tol (how far a probability row's sum may be from 1)
    A finite real in [0, 1); default 1e-3, which float32 softmax rows of up
    to a few thousand classes stay well inside. infinity would switch the
    row check off, and 1 or more would accept an all-zero row, which is not
    a distribution; both are refused. Rows computed in half precision
    (float16, bfloat16) are allowed the rounding of their dtype on top of
    it (see ``row_sum_tolerance``).

margin (ModelGuard-W: the top-1 class beats every other class by it)
    A finite real in [0, 1): a margin of 1 would need a one-hot answer
    beating the others by 1, which leaves no feasible answer but one-hot
    rows already there.

log_shift (ModelGuard-W: added to y inside its log cost)
    A finite real > 0: it keeps log(y + log_shift) finite for zero entries.

num_classes
    A positive integer, or None where a defense accepts any number of
    columns.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from ._validation import real_number as real

#: Largest L1 distance between two probability vectors, and so the largest eps.
EPS_MAX = 2.0
#: Default tolerance on the sum of a probability row (see the module docstring).
DEFAULT_SUM_TOL = 1e-3


def eps(value: Any, name: str = "eps") -> float:
    """An L1 budget: a finite real in [0, 2] (the module docstring says why)."""
    value = real(value, name)
    if not 0.0 <= value <= EPS_MAX:
        raise ValueError(f"{name} must be in [0, 2] (an L1 budget between probability vectors; "
                         f"2 is the largest such distance), got {value}")
    return value


def eps_values(values: Any, name: str = "eps_values") -> tuple[float, ...]:
    """A non-empty sequence of L1 budgets, each as `eps` requires."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of numbers in [0, 2], got {values!r}")
    return tuple(eps(v, f"{name}[{i}]") for i, v in enumerate(values))


def sum_tol(value: Any, name: str = "sum_tol") -> float:
    """A tolerance on probability row sums: a finite real in [0, 1)."""
    value = real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (at 1 an all-zero row would pass as a distribution), "
                         f"got {value}")
    return value


def row_sum_tolerance(tol: float, dtype: Any) -> float:
    """The tolerance rows of `dtype` are held to: `tol`, plus the machine epsilon for half precision.

    A softmax computed in float16 or bfloat16 rounds every entry to a relative
    half-epsilon and its normaliser to another, so its row sum can miss 1 by up
    to one machine epsilon (bfloat16: 2**-7 = 0.0078; a bfloat16 model's
    softmax was seen at 0.998046875). float32 and float64 rows are held to
    `tol` alone: their rounding is far below the default tolerance.
    """
    eps_machine = _HALF_EPSILON.get(str(dtype).replace("torch.", ""))
    return tol + eps_machine if eps_machine is not None else tol


_HALF_EPSILON = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def margin(value: Any, name: str = "margin") -> float:
    """ModelGuard-W's top-1 margin: a finite real in [0, 1)."""
    value = real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def log_shift(value: Any, name: str = "log_shift") -> float:
    """ModelGuard-W's log shift: a finite real > 0."""
    value = real(value, name)
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0 (it keeps log(y + log_shift) finite), got {value}")
    return value


def num_classes(value: Any, name: str = "num_classes", optional: bool = False) -> int | None:
    """A number of classes: a positive integer (or None when `optional`)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """A bool option (renormalize, logits...): exactly True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value
