"""The attack strategies the library knows by key: query strategies and recovery strategies.

A query strategy picks the images to ask (KnockoffNets random sampling,
JBDA-TR's synthetic images; Section 4.1 of the paper). A recovery strategy
turns the received answers into training labels for the substitute (Naive,
Top-1, S4L, Smoothing, D-DAE, D-DAE+, partial Bayes; Sections 3.4 and 4.1,
Appendix B.1). run_attack, the experiments, their tables and the command line
read keys, labels and help text from QUERY_STRATEGIES and RECOVERY_STRATEGIES;
a new strategy is added here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..defense import Defense
from . import ddae, pbayes
from ._seeding import derive_seed, numpy_generator
from .config import AttackConfig


@dataclass(frozen=True)
class QueryStrategy:
    """key: the short name; label: its name in tables; help: one line for help texts."""

    key: str
    label: str
    help: str


#: The query strategies by key, in table order.
QUERY_STRATEGIES: Mapping[str, QueryStrategy] = MappingProxyType({s.key: s for s in (
    QueryStrategy("knockoff", "KnockoffNets", "KnockoffNets: random images of the attacker's pool"),
    QueryStrategy("jbda", "JBDA-TR", "JBDA-TR: pool seed images, then synthetic ones (targeted I-FGSM) in rounds"),
)})


@dataclass
class Recovery:
    """What a recovery strategy works from (run_attack fills it after the queries).

    received: (N, C) the oracle's answers (CPU); clean: (N, C) the target's clean predictions of the
    same images, from the Referee, used only as the partial Bayes table's Dirichlet means when
    config.bayes_means == "clean" (the paper's Remark 5); images: (N, ...) the queried images;
    offline: the defense's offline_map() and views its query_views of the images (None unless the
    strategy needs an offline map); shadows(): D-DAE's trained shadow models.
    """

    received: torch.Tensor
    clean: torch.Tensor
    images: torch.Tensor
    num_classes: int
    config: AttackConfig
    seed: int
    device: torch.device
    verbose: bool
    offline: Optional[Defense] = None
    views: Optional[torch.Tensor] = None
    shadows: Optional[Callable[[], list[nn.Module]]] = None


#: recover(inputs) -> (labels (N, C) on the CPU, table rows or training pairs kept, or None).
Recover = Callable[[Recovery], "tuple[torch.Tensor, Optional[int]]"]


@dataclass(frozen=True)
class RecoveryStrategy:
    """key: the short name; label: its name in tables; help: one line for help texts;
    needs_offline_map: it replays the defense offline (the defense must be deterministic, checked before
    any query); needs_pool_labels: it needs the pool's own labels (unless its models are given);
    recover: the labels the substitute trains on (see Recovery)."""

    key: str
    label: str
    help: str
    recover: Recover
    needs_offline_map: bool = False
    needs_pool_labels: bool = False


def one_hot_top1(answers: torch.Tensor) -> torch.Tensor:
    """The one-hot rows (N, C) of each answer's top-1 class, in the answers' dtype."""
    return F.one_hot(answers.argmax(dim=1), answers.shape[1]).to(answers.dtype)


def _as_received(r: Recovery) -> tuple[torch.Tensor, None]:
    return r.received, None


def _top1(r: Recovery) -> tuple[torch.Tensor, None]:
    return one_hot_top1(r.received), None


def _restored(r: Recovery, perturbed: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    restorer = ddae.train_restorer(perturbed, truth, r.config, seed=derive_seed(r.seed, "restorer"), device=r.device,
                                   verbose=r.verbose)
    return ddae.restore(restorer, r.received, r.device).cpu()


def _ddae(r: Recovery) -> tuple[torch.Tensor, int]:
    perturbed, truth = ddae.shadow_pairs(r.shadows(), r.images, r.offline, r.views)
    return _restored(r, perturbed, truth), len(perturbed)


def _table(r: Recovery) -> pbayes.LookupTable:
    clean_means = r.config.bayes_means == "clean"
    return pbayes.draw_table(r.offline, r.clean if clean_means else r.received, r.config.bayes_table_size,
                             r.config.bayes_precision_factor * r.num_classes, numpy_generator(r.seed, "bayes table"),
                             r.views, r.verbose,
                             means_name="the target's clean predictions" if clean_means
                             else "the received answers (bayes_means='received')")


def _ddae_plus(r: Recovery) -> tuple[torch.Tensor, int]:
    table = _table(r)
    return _restored(r, table.perturbed, table.clean), len(table)


def _pbayes(r: Recovery) -> tuple[torch.Tensor, int]:
    table = _table(r)
    top1_filter = r.offline.preserves_top1 if r.config.bayes_top1_filter is None else r.config.bayes_top1_filter
    return pbayes.recover(table, r.received, r.config.bayes_delta, top1_filter), len(table)


#: The recovery strategies by key, in table order.
RECOVERY_STRATEGIES: Mapping[str, RecoveryStrategy] = MappingProxyType({s.key: s for s in (
    RecoveryStrategy("naive", "Naive", "train on the answers as received", _as_received),
    RecoveryStrategy("top1", "Top-1", "train on the one-hot top-1 of each answer", _top1),
    RecoveryStrategy("s4l", "S4L", "the answers plus a rotation-prediction loss (self-supervised)", _as_received),
    RecoveryStrategy("smoothing", "Smoothing", "query augmented copies of each image, train on the answers",
                     _as_received),
    RecoveryStrategy("ddae", "D-DAE", "a restorer learned from shadow models' predictions through the offline map",
                     _ddae, needs_offline_map=True, needs_pool_labels=True),
    RecoveryStrategy("ddae+", "D-DAE+", "a restorer learned from the partial Bayes table", _ddae_plus,
                     needs_offline_map=True),
    RecoveryStrategy("pbayes", "pBayes", "partial Bayes: match each answer in a table of offline answers", _pbayes,
                     needs_offline_map=True),
)})

