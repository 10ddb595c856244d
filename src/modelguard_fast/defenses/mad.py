"""MAD, Maximizing Angular Deviation (Orekondy et al., ICLR 2020), batched.

See modelguard_fast.ops.mad for the last-layer identity that lets MAD work
from the surrogate's softmax alone, without the public code's C backward
passes per query.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params
from .._validation import choice, positive_int
from ..defense import Defense
from ..params import DEFAULT_SUM_TOL
from ..ops import mad as mad_ops
from . import _torch_io as io

#: Largest exhaustive_max_classes: 2^16 vertex sets per row.
MAX_EXHAUSTIVE_CLASSES = 16

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def random_surrogate(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with freshly drawn weights: MAD's surrogate of the attacker's model.

    Weights are drawn as torch's defaults draw them (Linear and convolution
    layers uniform in +-1/sqrt(fan_in), normalisation layers at weight 1 and
    bias 0 with fresh running statistics, embeddings standard normal), from a
    torch.Generator seeded with `seed`: the global RNG is neither used nor
    disturbed, and the same seed gives the same surrogate on every device.
    The copy is returned in eval mode without gradients (MAD only runs it
    forward). Layers of other types that own parameters are refused: build
    such a surrogate yourself and pass it to MAD(surrogate=...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    generator = torch.Generator().manual_seed(int(seed))
    surrogate = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in surrogate.named_modules():
            own = dict(module.named_parameters(recurse=False))
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                weight = module.weight
                fan_in = weight.shape[1] * math.prod(weight.shape[2:])
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                for param in own.values():
                    _fill(param, torch.empty(param.shape, dtype=torch.float64).uniform_(-bound, bound,
                                                                                       generator=generator))
            elif isinstance(module, _NORMS):
                if "weight" in own:
                    own["weight"].fill_(1.0)
                if "bias" in own:
                    own["bias"].zero_()
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
            elif isinstance(module, nn.Embedding):
                weight = torch.empty(module.weight.shape, dtype=torch.float64).normal_(generator=generator)
                if module.padding_idx is not None:
                    weight[module.padding_idx] = 0.0
                _fill(module.weight, weight)
            elif own:
                raise TypeError(f"random_surrogate cannot redraw the weights of layer {name!r} "
                                f"({type(module).__name__}); build the surrogate yourself and pass "
                                "MAD(surrogate=...)")
    return surrogate.eval().requires_grad_(False)


def _fill(param: torch.Tensor, values: torch.Tensor) -> None:
    param.copy_(values.to(device=param.device, dtype=param.dtype))


class MAD(Defense):
    """Maximizing Angular Deviation, for whole batches at once.

    Each answer is y' = (1 - alpha) y + alpha y*, with alpha =
    clamp(eps / (||y - y*||_1 + 1e-7), 0, 1) (the public code's closed-form
    line search, so ||y' - y||_1 <= eps) and y* the target that maximises
    2 - 2 cos(p - y*, p * sum(y) - y), p being the surrogate's softmax of the
    query. That is the public code's angular objective on the surrogate's
    last-layer Jacobian, computed without the Jacobian (see
    modelguard_fast.ops.mad).

    Oracles, as in the public code:
      - "argmax" (default, the paper's setting): y* is uniform over a set of
        classes holding the top class, whose entry is bumped by 1e-5, so y*
        and y' keep the top-1 label. All 2^(C-1) sets are tried when
        C <= exhaustive_max_classes (default 10); above, the set is grown
        greedily until max_evals (default 1,024) candidates have been scored
        or every class is in the set, as in the function the ModelGuard public
        code calls for C > 10 (oracle_argmax_preserving_approx_gpu, which stops
        when no class is left). The original MAD code's copy of that function,
        and its unused numpy variant, lack that stop and fail when the classes
        run out before the budget (C < 46 at 1,024).
      - "extreme": y* is the best one-hot vector; the top-1 label may change.

    Ties between candidates go to the first in the public code's order. A
    candidate whose objective is undefined (a surrogate softmax equal to y,
    where the public code divides by zero) never wins against a defined one.
    Computed in float64 and returned in the input's dtype.

    Calling: ``mad(probs, surrogate_probs)``, where surrogate_probs is the
    surrogate's softmax of the same queries (same shape as probs). A MAD
    built with a surrogate model computes it with ``mad.query_view(x)``, and
    GuardedModel does this for you.

    Args:
        eps: L1 budget, in [0, 2] (default 1.0; modelguard_fast.params says why).
        oracle: "argmax" (default) or "extreme".
        surrogate: the surrogate model (logits out), used by query_view. See
            MAD.from_target for the paper's randomly initialised copy.
        num_classes: number of columns C to insist on (None: any).
        max_evals: greedy search budget in scored candidates (default 1,024).
        exhaustive_max_classes: largest C searched exhaustively (default 10, at most 16).
        sum_tol: rows of probs and surrogate_probs must sum to 1 within this tolerance.
    """

    name = "MAD"
    deterministic = True
    discrete_outputs = False
    needs_query = True

    def __init__(self, eps: float = 1.0, oracle: str = "argmax", surrogate: nn.Module | None = None,
                 num_classes: int | None = None, max_evals: int = 1024, exhaustive_max_classes: int = 10,
                 sum_tol: float = DEFAULT_SUM_TOL):
        self.eps = params.eps(eps)
        self.oracle = choice(oracle, "oracle", mad_ops.ORACLES)
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"surrogate must be a torch.nn.Module or None, got {type(surrogate).__name__}")
        self.surrogate = surrogate
        self.num_classes = params.num_classes(num_classes, optional=True)
        self.max_evals = positive_int(max_evals, "max_evals")
        self.exhaustive_max_classes = positive_int(exhaustive_max_classes, "exhaustive_max_classes")
        if self.exhaustive_max_classes > MAX_EXHAUSTIVE_CLASSES:
            raise ValueError(f"exhaustive_max_classes must be at most {MAX_EXHAUSTIVE_CLASSES} "
                             f"(2^C vertex sets per row), got {self.exhaustive_max_classes}")
        self.sum_tol = params.sum_tol(sum_tol)
        self.preserves_top1 = self.oracle == "argmax"

    @classmethod
    def from_target(cls, target: nn.Module, seed: int = 0, **kwargs: Any) -> "MAD":
        """MAD whose surrogate is random_surrogate(target, seed), as in the paper."""
        return cls(surrogate=random_surrogate(target, seed), **kwargs)

    def __repr__(self) -> str:
        return (f"MAD(eps={self.eps}, oracle={self.oracle!r}, num_classes={self.num_classes}, "
                f"surrogate={'set' if self.surrogate is not None else None})")

    @property
    def query_model(self) -> nn.Module | None:
        return self.surrogate

    def query_view(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate's softmax of the query batch x (a tensor on the surrogate's device)."""
        if self.surrogate is None:
            raise ValueError("this MAD has no surrogate model; pass surrogate_probs to the call, or build it "
                             "with MAD(surrogate=...) or MAD.from_target(target)")
        return io.model_softmax(self.surrogate, x)

    def __call__(self, probs: Any, surrogate_probs: Any) -> Any:
        """Perturbed predictions for `probs`, given the surrogate's softmax of the same queries."""
        batch, y, top = io.tensor_batch(probs, "probs", self.num_classes, self.sum_tol, np.float64)
        p = io.companion(surrogate_probs, "surrogate_probs", batch, y, self.sum_tol)
        targets, _ = mad_ops.mad_targets(p, y, top, self.oracle, self.max_evals, self.exhaustive_max_classes)
        out = mad_ops.line_search(y, targets, self.eps)
        self.stats.record(batch.rows)
        return io.restore(out, batch)
