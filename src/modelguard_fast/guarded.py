"""GuardedModel: a target model and a defense as one torch.nn.Module."""

from __future__ import annotations

import threading

import torch
from torch import nn

from ._validation import choice
from .defense import Defense, serving

OUTPUTS = ("logits", "probs")


class GuardedModel(nn.Module):
    """A torch.nn.Module whose forward returns the defended probabilities of `model`.

    forward(x) runs `model` on the query batch x (B, ...), takes the softmax
    (outputs="logits", the default; outputs="probs" when the model already
    returns probabilities), in float32 (float64 for float64 models), and
    answers with defense.defend(probs, x) (B, C): the defense's answers, with
    its view of x for defenses that look at the query (MAD, Adaptive
    Misinformation; see modelguard_fast.defense).

    Serving never changes the model and never makes an answer depend on the
    rest of its batch: the model (and the defense's query model) run in eval
    mode under torch.inference_mode(), whatever mode they are in. A model left
    in training mode is switched to eval for the call and back afterwards
    (its batch-normalisation statistics stay as they were), so the caller may
    keep training it between calls; calls through one GuardedModel are
    serialised for that switch. The answers are ordinary tensors without
    gradients. The model must return (B, C) for a batch of B queries; anything
    else is refused with a ValueError before the defense sees it. A model that
    returns float16 or bfloat16 probabilities (outputs="probs") is answered in
    float32, its rows held to sum_tol plus the rounding of their dtype (see
    modelguard_fast.params).

    The defense's query model (MAD's surrogate, AM's misinformation model) is
    registered as a submodule, so .to(device) moves it with the target; it
    stays in eval mode whatever train() is called with.
    """

    def __init__(self, model: nn.Module, defense: Defense, outputs: str = "logits"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(defense, Defense):
            raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
        self.model = model
        self.defense = defense
        self.outputs = choice(outputs, "outputs", OUTPUTS)
        self.query_model = defense.query_model
        if self.query_model is not None:
            self.query_model.eval()
        self._mode_lock = threading.RLock()

    def __getstate__(self) -> dict:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_mode_lock", None)  # a lock cannot be copied or pickled; each copy gets its own
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._mode_lock = threading.RLock()

    def train(self, mode: bool = True) -> "GuardedModel":
        """Sets the target's mode as nn.Module does (serving uses eval mode either way); the query model
        stays in eval mode."""
        super().train(mode)
        if self.query_model is not None:
            self.query_model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defense.defend(self.probabilities(x), x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The undefended probabilities (B, C) of the model for the query batch x (B, ...)."""
        with self._mode_lock, serving(self.model):
            out = self.model(x)
            if isinstance(out, torch.Tensor) and self.outputs == "logits":
                out = torch.softmax(out, dim=-1, dtype=torch.float64 if out.dtype == torch.float64 else torch.float32)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"model must return a torch.Tensor, got {type(out).__name__}")
        batch = len(x) if isinstance(x, torch.Tensor) and x.ndim > 0 else None
        if out.ndim != 2 or (batch is not None and out.shape[0] != batch):
            raise ValueError(f"model output must have shape (B, C) = ({batch}, num_classes) for a batch of {batch} "
                             f"queries, got shape {tuple(out.shape)}")
        out = out.clone()  # an ordinary tensor, not an inference-mode one
        # Probabilities computed in half precision stay in it: the defense then allows their sums the
        # rounding of that dtype (modelguard_fast.params.row_sum_tolerance) and answers in float32.
        return out

    def extra_repr(self) -> str:
        return f"defense={self.defense!r}, outputs={self.outputs!r}"
