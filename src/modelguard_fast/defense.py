"""The Defense protocol every defense implements, and the one way to defend a batch.

A defense maps the clean predictions of a batch of queries to the answers a
protected model gives (the paper's Section 2 setting: the defender sees the
query and the target's prediction of it). This module holds what is the same
for every defense, the way torchmetrics keeps `Metric` at its root:

- `Defense.defend(probs, x)`: the answers to the predictions `probs` of the
  queries `x`. Defenses that look at the query (MAD: its surrogate's softmax;
  Adaptive Misinformation: its misinformation model's softmax) get their
  view of `x` computed here (`query_views`: in eval mode, under
  torch.inference_mode(), in batches on their model's device); the others
  ignore `x`. GuardedModel, the attacks' Oracle, the experiments and the
  utility metrics all defend through this call.
- `Defense.offline_map()` and `Defense.replay()`: the map an attacker replays
  on made-up predictions (partial Bayes, Section 3.4 and Appendix B.1; D-DAE),
  never touching the defender's state. A stateless defense is its own map;
  ModelGuard-S replays through a frozen view of its codebooks.
- `Defense.stats` / `Defense.reset_stats()`: one accumulator of what a
  defense has answered (rows, and where the defense measures them, L1
  distortion and infeasible rows), with one reset.
"""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn



@contextmanager
def serving(model: nn.Module) -> Iterator[None]:
    """Runs the block with every submodule of `model` in eval mode and under torch.inference_mode().

    Submodules that were in training mode are switched back when the block
    ends (also on an error), so serving never changes the model: batch
    normalisation uses its running statistics and leaves them untouched,
    dropout is off, and each answer depends on its own row only.
    """
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    try:
        with torch.inference_mode():
            yield
    finally:
        for module in training:
            module.training = True


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without either)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


# One lock per query model: its mode is switched for a view (serving), so two threads must not
# interleave that switch on one model.
_MODEL_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


def check_replayable(defense: Any) -> None:
    """Raises unless `defense` has an offline map (a deterministic modelguard_fast Defense).

    Raises TypeError for anything but a Defense, ValueError for a randomized
    one. Attacks call it before spending any query.
    """
    if not isinstance(defense, Defense):
        raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
    if not defense.deterministic:
        raise ValueError(f"{defense.name} is randomized; partial Bayes and D-DAE need a deterministic offline "
                         "map (average repeated queries with qpi > 1 to attack its mean, as Remark 3 of the "
                         "paper suggests)")


_ZERO = (0, 0, 0, 0.0, 0.0)  # queries, infeasible, distortion_rows, distortion_sum, distortion_max


def _merged(a: tuple, b: tuple) -> tuple:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], max(a[4], b[4]))


class _Tally:
    """One generation of a DefenseStats's counts: `base` plus one cell per thread that recorded into it,
    plus what a kernel counted in `kernel`.

    Each thread writes only its own cell, a one-item list whose item is
    replaced by a new 5-tuple per record (one reference store, atomic), so a
    record needs no lock and readers see each record whole or not at all.
    `kernel` (float64: rows, their distortion sum, the largest distortion) is
    added to by compiled code while it holds the GIL (ModelGuard-S's hits:
    Codebooks.quantize_array), and read in one call (tolist), so also whole.
    `lock` guards `base` and `cells` (readers, new cells, folding).
    """

    __slots__ = ("local", "lock", "base", "cells", "kernel")

    def __init__(self, base: tuple = _ZERO) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.base = base
        self.cells: list[tuple[list, threading.Thread]] = []
        self.kernel = np.zeros(3)

    def new_cell(self) -> list:
        cell = [_ZERO]
        with self.lock:
            if len(self.cells) >= _FOLD_AT:
                self._fold_dead()
            self.cells.append((cell, threading.current_thread()))
        self.local.cell = cell
        return cell

    def _fold_dead(self) -> None:
        """Moves the counts of threads that ended into base (under lock): a dead thread's cell is final."""
        live = []
        for cell, thread in self.cells:
            if thread.is_alive():
                live.append((cell, thread))
            else:
                self.base = _merged(self.base, cell[0])
        self.cells = live

    def total(self) -> tuple:
        with self.lock:
            self._fold_dead()
            rows, distortion, largest = self.kernel.tolist()
            total = _merged(self.base, (int(rows), 0, int(rows), distortion, largest))
            for cell, _ in self.cells:
                total = _merged(total, cell[0])
            return total


# Cells kept before those of ended threads are folded into the base (bounds memory when each
# request gets a new thread).
_FOLD_AT = 64


class DefenseStats:
    """What a defense has answered since it was built or since its reset_stats().

    Attributes (read them through `snapshot()` for a consistent set):
        queries: rows answered (int).
        infeasible: rows answered unchanged because the defense's problem had no
            solution (ModelGuard-W's linear program; 0 for other defenses).
        distortion_rows: rows whose L1 distortion the defense measured (ModelGuard-S
            measures every answer; other defenses none).
        distortion_sum, distortion_max: sum and largest of those distortions (L1, float).

    Thread-safe and exact: each record() is one atomic update, without a lock
    (each thread adds into its own cell; readers sum the cells), so serving
    threads never wait on each other here; compiled code may count measured
    answers into `kernel_tally` instead, holding the GIL. reset() and load()
    start a new generation of cells; a record racing with them lands before
    or after them, whole. Copies (pickle, copy.deepcopy) carry the counts. A
    forked child keeps the counts and gets fresh locks (the fork does not
    wait for them: these are counts, not protection state, and their lock is
    never held while another is taken).
    """

    _FIELDS = ("queries", "infeasible", "distortion_rows", "distortion_sum", "distortion_max")

    def __init__(self) -> None:
        self._tally = _Tally()
        _ALL_STATS.add(self)

    def record(self, rows: int, *, infeasible: int = 0, distortion_sum: Optional[float] = None,
               distortion_max: float = 0.0) -> None:
        """Adds one call's answers: `rows` rows, `infeasible` of them infeasible, and, when the defense
        measured them, their summed and largest L1 distortion."""
        tally = self._tally
        try:
            cell = tally.local.cell
        except AttributeError:
            cell = tally.new_cell()
        q, inf, measured, total, largest = cell[0]
        if distortion_sum is None:
            cell[0] = (q + rows, inf + infeasible, measured, total, largest)
        else:
            cell[0] = (q + rows, inf + infeasible, measured + rows, total + distortion_sum,
                       largest if largest >= distortion_max else distortion_max)

    @property
    def kernel_tally(self) -> np.ndarray:
        """The float64 array (rows, distortion sum, largest distortion) of the current counts that compiled
        code adds measured answers to, holding the GIL (Codebooks.quantize_array's `tally`)."""
        return self._tally.kernel

    @property
    def queries(self) -> int:
        return self._tally.total()[0]

    @property
    def infeasible(self) -> int:
        return self._tally.total()[1]

    @property
    def distortion_rows(self) -> int:
        return self._tally.total()[2]

    @property
    def distortion_sum(self) -> float:
        return self._tally.total()[3]

    @property
    def distortion_max(self) -> float:
        return self._tally.total()[4]

    @property
    def mean_distortion(self) -> float:
        """Mean L1 distortion of the measured answers (0.0 before any)."""
        _, _, rows, total, _ = self._tally.total()
        return total / rows if rows else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The counts as a dict of plain numbers, each record counted whole or not at all."""
        return dict(zip(self._FIELDS, self._tally.total()))

    def load(self, values: dict[str, Any]) -> None:
        """Replaces the counts with those of a snapshot()."""
        self._tally = _Tally(tuple(values[name] for name in self._FIELDS))

    def reset(self) -> None:
        self._tally = _Tally()

    def __getstate__(self) -> dict[str, Any]:
        return self.snapshot()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        self.load(state)

    def __repr__(self) -> str:
        return "DefenseStats(" + ", ".join(f"{k}={v}" for k, v in self.snapshot().items()) + ")"


_STATS_GUARD = threading.Lock()
_ALL_STATS: "weakref.WeakSet[DefenseStats]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _MODEL_LOCKS_GUARD, _STATS_GUARD
    _MODEL_LOCKS_GUARD, _STATS_GUARD = threading.Lock(), threading.Lock()
    _MODEL_LOCKS.clear()
    for stats in list(_ALL_STATS):
        stats._tally.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Defense:
    """A defense maps clean predictions (B, C) or (C,) to defended ones.

    Inputs may be numpy arrays, torch tensors on any device, or cupy arrays
    (float32 or float64; float16/bfloat16 are answered in float32); outputs
    have the input's type, device, dtype and shape. Class attributes tell
    attacks what to expect of the outputs. Every defense is a context
    manager: ``with ModelGuardS(10, eps=1.0, journal="guard.journal") as guard:``
    closes it (its journal) at the end of the block.

    Subclasses implement __call__ (and, when needs_query, query_view); they
    record each call's rows in `stats`. Serving code calls `defend`.
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

    # ------------------------------------------------------------ serving
    def defend(self, probs: Any, x: Optional[torch.Tensor] = None, *, view: Any = None,
               batch_size: Optional[int] = None) -> Any:
        """The defense's answers to `probs`, the clean predictions of the query batch `x`.

        Args:
            probs: (B, C) or (C,) probability rows (numpy, torch on any device or cupy; float32 or
                float64), checked as every defense checks them (modelguard_fast.params).
            x: the queries (B, ...), a torch.Tensor. Defenses with needs_query (MAD, AM) answer with
                their view of it, computed by query_views(x, batch_size); the others ignore it.
            view: that view itself (B, C), instead of x (e.g. computed once and reused).
            batch_size: rows of x per forward pass of the query model (None: all at once).

        Returns the answers with probs' type, device, dtype and shape, computed without gradients.
        Raises TypeError when a defense that needs the query gets neither x nor view (or both),
        ValueError for rows the defense refuses (nothing is counted then).
        """
        if not self.needs_query:
            return self(probs)  # answers never carry gradients: every defense reads its input detached
        if (x is None) == (view is None):
            raise TypeError(f"{type(self).__name__} needs the query: pass either x (the query batch) or view "
                            f"(its query_view), got {'neither' if x is None else 'both'}")
        if view is None:
            view = self.query_views(x, batch_size)
        with torch.no_grad():
            return self(probs, view)

    def query_view(self, x: Any) -> Any:
        """The per-query argument of __call__, computed from the query batch x."""
        raise TypeError(f"{type(self).__name__} does not look at the query; call it with the predictions alone")

    def query_views(self, x: torch.Tensor, batch_size: Optional[int] = None) -> Optional[torch.Tensor]:
        """The defense's view (B, C) of the query batch x (B, ...); None for defenses that do not look at it.

        The query model runs in eval mode under torch.inference_mode() (its
        own mode is restored afterwards; one thread at a time per model), on
        its own device, `batch_size` rows at a time (None: all at once). The
        view comes back on x's device as an ordinary tensor (float32, or
        float64 for a float64 model). Raises TypeError when x is not a tensor.
        """
        if not self.needs_query:
            return None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of queries, got {type(x).__name__}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        model = self.query_model if self.query_model is not None else nn.Module()
        device = module_device(model) if self.query_model is not None else x.device
        step = batch_size or max(len(x), 1)
        with _model_lock(model), serving(model):
            parts = [self.query_view(x[i:i + step].to(device)) for i in range(0, max(len(x), 1), step)]
        view = parts[0] if len(parts) == 1 else torch.cat(parts)
        return view.to(x.device).clone()  # an ordinary tensor, not an inference-mode one

    # ------------------------------------------------------------ the attacker's offline map
    def offline_map(self) -> "Defense":
        """The defense as an attacker replays it offline (partial Bayes, Section 3.4; D-DAE).

        A deterministic defense whose calls never change this defense's state:
        stateless defenses are their own map; ModelGuard-S returns a frozen
        view of its codebooks as they are now (FrozenModelGuardS), so take it
        after the attacker's queries. Raises ValueError for a randomized
        defense (see check_replayable).
        """
        check_replayable(self)
        return self

    def replay(self, probs: Any, view: Any = None) -> tuple[Any, Any]:
        """(answers, keep) of the offline map for made-up predictions `probs` (B, C).

        answers: as defend(probs, view=view) gives them. keep: bool (B,) (() for one (C,) row), of
        probs' kind (numpy array, or torch tensor on its device): the rows the
        live defense could have answered that way; all True here, False where
        ModelGuard-S's frozen view fell back to a centroid farther than eps.
        Call it on offline_map(), not on a stateful defense.
        """
        answers = self.defend(probs, view=view)
        if isinstance(probs, torch.Tensor):
            return answers, torch.ones(probs.shape[:-1], dtype=torch.bool, device=probs.device)
        return answers, np.ones(np.shape(probs)[:-1], dtype=bool)

    # ------------------------------------------------------------ statistics
    @property
    def stats(self) -> DefenseStats:
        """What this defense has answered since it was built or since reset_stats() (DefenseStats)."""
        stats = self.__dict__.get("_stats")
        if stats is None:
            with _STATS_GUARD:
                stats = self.__dict__.setdefault("_stats", DefenseStats())
        return stats

    @property
    def num_queries(self) -> int:
        """Rows answered since construction or reset_stats()."""
        return self.stats.queries

    def reset_stats(self) -> None:
        """Sets every statistic back to zero (state that protects the model, e.g. codebooks, stays)."""
        self.stats.reset()

    # ------------------------------------------------------------ resources
    def close(self) -> None:
        """Releases what the defense holds open (ModelGuard-S: its journal); nothing for most defenses."""

    def __enter__(self) -> "Defense":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
