"""GuardedModel: a target model and a defense as one torch.nn.Module."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import choice
from .defenses.base import Defense

OUTPUTS = ("logits", "probs")


class GuardedModel(nn.Module):
    """A torch.nn.Module whose forward returns the defended probabilities of `model`.

    forward(x) runs `model` on x, takes the softmax (outputs="logits", the
    default; outputs="probs" when the model already returns probabilities),
    in float32 (float64 for float64 models), and answers with defense(probs),
    or defense(probs, defense.query_view(x)) for defenses that look at the
    query (MAD, Adaptive Misinformation). Everything runs without gradients:
    this is a serving wrapper.

    The defense's query model (MAD's surrogate, AM's misinformation model) is
    registered as a submodule, so .to(device) moves it with the target; it
    stays in eval mode whatever train() is called with, since a surrogate
    with batch-statistics layers in training mode would make each answer
    depend on the rest of its batch.
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

    def train(self, mode: bool = True) -> "GuardedModel":
        super().train(mode)
        if self.query_model is not None:
            self.query_model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.defend(self.probabilities(x), x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The undefended probabilities of the model for the query batch x."""
        with torch.no_grad():
            out = self.model(x)
        if self.outputs == "logits":
            return torch.softmax(out, dim=-1, dtype=torch.float64 if out.dtype == torch.float64 else torch.float32)
        return out if out.dtype in (torch.float32, torch.float64) else out.float()

    def defend(self, probs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The defense's answers to the queries x whose clean probabilities are `probs`."""
        with torch.no_grad():
            if self.defense.needs_query:
                return self.defense(probs, self.defense.query_view(x))
            return self.defense(probs)

    def extra_repr(self) -> str:
        return f"defense={self.defense!r}, outputs={self.outputs!r}"
