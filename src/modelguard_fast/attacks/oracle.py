"""The two views of a target: the attacker's (defended answers, counted) and the referee's (clean)."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .._validation import positive_int
from ..defense import Defense, module_device
from ..defenses.none import NoDefense
from ..guarded import GuardedModel


class BudgetExceededError(RuntimeError):
    """A query would take the oracle past its budget; nothing of it was answered."""


def _batched(model_fn, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    parts = [model_fn(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).to(x.device)


class Oracle:
    """The attacker's only access to the target: the defense's answers, counted against a budget.

    `query(x)` runs the target on x (on the target's device), takes the softmax
    and answers with the defense's output (for MAD and Adaptive Misinformation,
    with the defense's view of x), exactly as GuardedModel serves it. Answers
    come back on x's device. Every answered row costs one query.

    A query is atomic: the target runs on every chunk of batch_size rows
    first, its outputs must be (rows, C) probabilities, and only then does
    the defense answer the whole query in one call. A query that would go past
    the budget (BudgetExceededError), a target output of the wrong shape, or a
    row the defense refuses (a NaN, a negative entry: ValueError naming the
    query's row) counts nothing and changes nothing: a stateful defense
    (ModelGuard-S) never sees any of it.

    The oracle keeps no clean predictions: what the evaluation needs of the
    undefended target goes through a Referee, which attack code is not given.

    Args:
        target: the target model (logits out unless outputs="probs"); served in eval mode (see GuardedModel),
            its own mode is left as it is.
        defense: any modelguard_fast Defense; stateful ones keep what the queries do to them.
        budget: the number of predictions the oracle will return, at most.
        outputs: "logits" (default) or "probs", what the target returns.
        batch_size: rows per forward pass of the target. The defense answers a batch as it
            would row by row, but the target's own arithmetic may change in the last bits with
            the batch size, so keep it fixed where answers must repeat exactly.
    """

    def __init__(self, target: nn.Module, defense: Defense, budget: int, outputs: str = "logits",
                 batch_size: int = 256):
        self._guarded = GuardedModel(target, defense, outputs)
        self.defense = defense
        self.budget = positive_int(budget, "budget")
        self.batch_size = positive_int(batch_size, "batch_size")
        self._used = 0

    @property
    def queries_used(self) -> int:
        return self._used

    @property
    def remaining(self) -> int:
        return self.budget - self._used

    def __repr__(self) -> str:
        return f"Oracle(defense={self.defense!r}, budget={self.budget}, queries_used={self._used})"

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """The defended predictions (B, C) for the query batch x (B, ...), in order."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of query inputs, got {type(x).__name__}")
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"x must hold at least one query (batch first), got shape {tuple(x.shape)}")
        if len(x) > self.remaining:
            raise BudgetExceededError(
                f"a query of {len(x)} inputs exceeds the oracle's budget: {self._used} of {self.budget} queries "
                f"used, {self.remaining} left")
        device = module_device(self._guarded.model)
        probs, views = [], []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size].to(device)
            try:
                probs.append(self._guarded.probabilities(chunk))
            except ValueError as err:
                raise ValueError(f"the target's answer to query rows {start}..{start + len(chunk) - 1} was "
                                 f"refused, nothing was counted: {err}") from err
            if self.defense.needs_query:
                views.append(self.defense.query_views(chunk))
        probs = _concat(probs, "probabilities")
        try:  # one call: the defense sees the whole query, or nothing of it if a row is refused
            answers = self.defense.defend(probs, view=_concat(views, "query views") if views else None)
        except ValueError as err:
            raise ValueError(f"the oracle refused the query, nothing was counted (row numbers are the query's): "
                             f"{err}") from err
        self._used += len(x)
        return answers.to(x.device)


def _concat(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    """The chunks' rows as one batch; a chunk whose columns differ from the first's is refused."""
    for start, part in zip(itertools.accumulate([0] + [len(p) for p in parts]), parts):
        if part.shape[1:] != parts[0].shape[1:]:
            raise ValueError(f"the target's {what} must have the same shape for every query row, got "
                             f"{tuple(parts[0].shape[1:])} for row 0 and {tuple(part.shape[1:])} for row {start}")
    return torch.cat(parts)


class Referee:
    """The evaluation's view of the undefended target: clean predictions and test-set metrics.

    Attack code never holds a Referee; the harness (run_attack) uses it for
    extraction accuracy, fidelity and recovery distance, and, for the partial
    Bayes table of the paper (Appendix B.1, Remark 5), hands the clean
    predictions of the queried images to the table builder explicitly.
    Nothing it does is counted as a query or reaches the defense.

    Args:
        target: the target model; test_x (N, ...), test_y (N,) int64: the target's test set.
        outputs: "logits" or "probs", what the target returns.
        batch_size: rows per forward pass.
    """

    def __init__(self, target: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, outputs: str = "logits",
                 batch_size: int = 256):
        self._target = GuardedModel(target, NoDefense(), outputs)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.test_x = test_x
        self.test_y = test_y.cpu()
        test_probs = self.clean(test_x)
        self.num_classes = int(test_probs.shape[1])
        self.target_test_top1 = test_probs.argmax(dim=1).cpu()

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        """The target's undefended softmax of x, on x's device."""
        return _batched(self._target.probabilities, x, self.batch_size, module_device(self._target.model))

    def target_accuracy(self) -> float:
        return float((self.target_test_top1 == self.test_y).double().mean())
