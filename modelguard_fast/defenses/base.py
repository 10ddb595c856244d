"""The interface every defense shares."""

from __future__ import annotations

from typing import Any


class Defense:
    """A defense maps clean predictions (B, C) or (C,) to defended ones.

    Inputs may be numpy arrays, torch tensors on any device, or cupy arrays;
    outputs have the input's type, device, dtype and shape. Class attributes
    tell attacks what to expect of the outputs.
    """

    #: Short name used in tables.
    name: str = "defense"
    #: The top-1 label of every output equals the input's.
    preserves_top1: bool = False
    #: The same input always gets the same output.
    deterministic: bool = True
    #: Outputs take values in a finite set (quantized, one-hot or rounded).
    discrete_outputs: bool = False

    def __call__(self, probs: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
