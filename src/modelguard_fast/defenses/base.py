"""The interface every defense shares."""

from __future__ import annotations

from typing import Any


class Defense:
    """A defense maps clean predictions (B, C) or (C,) to defended ones.

    Inputs may be numpy arrays, torch tensors on any device, or cupy arrays;
    outputs have the input's type, device, dtype and shape. Class attributes
    tell attacks what to expect of the outputs. Every defense is a context
    manager: ``with ModelGuardS(10, eps=1.0, journal="guard.journal") as guard:``
    closes it (its journal) at the end of the block.
    """

    #: Short name used in tables.
    name: str = "defense"
    #: The top-1 label of every output equals the input's.
    preserves_top1: bool = False
    #: The same input always gets the same output.
    deterministic: bool = True
    #: Outputs take values in a finite set (quantized, one-hot or rounded).
    discrete_outputs: bool = False
    #: __call__ takes a second, per-query argument besides the predictions
    #: (MAD: the surrogate's softmax; Adaptive Misinformation: the
    #: misinformation model's softmax); query_view(x) computes it from the
    #: query batch x when the defense holds the model that sees x.
    needs_query: bool = False
    #: The model behind query_view, if any (GuardedModel moves it with the target).
    query_model: Any = None

    def __call__(self, probs: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the defense holds open (ModelGuard-S: its journal); nothing for most defenses."""

    def __enter__(self) -> "Defense":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def query_view(self, x: Any) -> Any:
        """The per-query argument of __call__, computed from the query batch x."""
        raise TypeError(f"{type(self).__name__} does not look at the query; call it with the predictions alone")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
