"""Partial Bayes (Section 3.4, Appendix B.1): the lookup table and the recovery of received answers.

The table holds, for each queried image i, K Dirichlet draws y_ij ~ Dir(m_i, s)
(mean m_i, precision s = 8C), each paired with the defense's offline answer
p(y_ij). The paper takes m_i to be the target's clean prediction of image i
(Remark 5: the attacker still does not know which answer belongs to which
image, since recovery never uses that link); bayes_means="received" uses the
attacker's own estimate instead. A received answer r is recovered as the mean
clean row over the table rows, of r's top-1 class when the defense preserves
top-1, whose offline answer is within L1 distance max(delta, nearest) of r:
modelguard_fast.ops.BayesTable does that matching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..defenses.base import Defense
from ..defenses.modelguard_s import ModelGuardS
from ..defenses.modelguard_s_frozen import FrozenModelGuardS
from ..ops.bayes import BayesTable
from .oracle import module_device

logger = logging.getLogger(__name__)

# Dirichlet concentrations are floored here: a clean prediction with an exact
# 0 entry (softmax underflow, one-hot answers) would give an invalid Dir(0).
MIN_CONCENTRATION = 1e-6
# Rows drawn and pushed through the defense at a time.
CHUNK_ROWS = 1 << 16


class OfflineDefense:
    """The defense as the attacker replays it on made-up clean predictions, never touching the defender's state.

    ModelGuard-S is replayed through its frozen() view (first centroid within
    eps, else the nearest, nothing inserted); answers farther than eps from
    their clean row (only the nearest fallback gives them) are flagged so the
    table can drop them. Other defenses are stateless maps and are called as
    they are; MAD and Adaptive Misinformation also get their view of the
    image each row stands for (the attacker knows the defense, and its
    surrogate or misinformation model, as the paper assumes).

    Args:
        defense: the defense behind the oracle. For ModelGuard-S, build the
            OfflineDefense after the attacker's queries, so the frozen view holds
            every centroid they created.
    """

    def __init__(self, defense: Defense):
        self.check(defense)
        self.defense = defense
        self.frozen = defense.frozen() if isinstance(defense, ModelGuardS) else (
            defense if isinstance(defense, FrozenModelGuardS) else None)

    @staticmethod
    def check(defense: Defense) -> None:
        """Raises unless `defense` can be replayed offline (a deterministic modelguard_fast Defense)."""
        if not isinstance(defense, Defense):
            raise TypeError(f"defense must be a modelguard_fast Defense, got {type(defense).__name__}")
        if not defense.deterministic:
            raise ValueError(f"{defense.name} is randomized; partial Bayes and D-DAE need a deterministic offline "
                             "map (average repeated queries with qpi > 1 to attack its mean, as Remark 3 of the "
                             "paper suggests)")

    @property
    def preserves_top1(self) -> bool:
        return bool(self.defense.preserves_top1)

    def views(self, x: torch.Tensor, batch_size: int = 256) -> Optional[torch.Tensor]:
        """The defense's per-query argument for images x (CPU float32), or None when it does not look at queries."""
        if not self.defense.needs_query:
            return None
        device = module_device(self.defense.query_model) if self.defense.query_model is not None else x.device
        return torch.cat([self.defense.query_view(x[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)])

    def __call__(self, clean: torch.Tensor, views: Optional[torch.Tensor] = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(offline answers, rows to keep) for clean rows (N, C), CPU float32."""
        if self.frozen is not None:
            rows = clean.numpy()
            top, index, distance = self.frozen.assign(rows)
            answers = rows.copy()
            hit = index >= 0
            answers[hit] = self.frozen.codebook[self.frozen.offsets[top[hit]] + index[hit]]
            keep = distance <= distance.dtype.type(self.frozen.eps)
            return torch.from_numpy(answers), torch.from_numpy(keep | ~hit)
        with torch.no_grad():
            answers = self.defense(clean) if views is None else self.defense(clean, views)
        return answers.float(), torch.ones(len(clean), dtype=torch.bool)


@dataclass
class LookupTable:
    """Partial Bayes table: clean rows and their offline answers, (rows, C) float32 each.

    draws: rows drawn before rows beyond eps were dropped; per_image: K.
    """

    clean: torch.Tensor
    perturbed: torch.Tensor
    draws: int
    per_image: int

    def __len__(self) -> int:
        return len(self.clean)


def dirichlet_means(means: torch.Tensor, name: str = "means") -> np.ndarray:
    """The rows of `means` (n, C) rescaled to sum 1, in float64; a row of zeros becomes the uniform row 1/C.

    A row of zeros carries no estimate of its image's prediction (Rounding to
    one decimal answers one for every row whose entries are all below 0.05,
    which happens at C > 20), so its draws come from the uninformed mean.
    Raises ValueError naming `name` for a non-finite or negative entry.
    """
    mean = means.detach().double().cpu().numpy()
    bad = ~np.isfinite(mean) | (mean < 0)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{name} must be finite and non-negative to serve as Dirichlet means, got "
                         f"{mean[row, col]} at row {row}, column {col}")
    sums = mean.sum(axis=1, keepdims=True)
    zero = sums[:, 0] == 0
    if zero.any():
        logger.info("partial Bayes table: %d of %d rows of %s are all zeros; their draws use the uniform mean",
                    int(zero.sum()), len(mean), name)
        mean[zero] = 1.0 / mean.shape[1]
        sums[zero] = 1.0
    return mean / sums


def draw_table(offline: OfflineDefense, means: torch.Tensor, table_size: int, precision: float,
               rng: np.random.Generator, views: Optional[torch.Tensor] = None, verbose: bool = False,
               means_name: str = "means") -> LookupTable:
    """K = max(1, table_size // len(means)) Dirichlet draws around each mean, pushed through the offline map.

    means: (n, C) rows of non-negative entries (rescaled to sum 1; a row of
    zeros gives the uniform mean, see dirichlet_means; means_name names them in errors);
    precision: s, the Dirichlet's total concentration (alpha = s * mean,
    floored at MIN_CONCENTRATION); views: (n, ...) per-image defense views,
    repeated for each of that image's draws. The draws for image i are
    contiguous, in image order. Draws come from `rng` (numpy's gamma sampler,
    in float64), and are stored in float32.
    """
    n, C = means.shape
    per_image = max(1, table_size // n)
    mean = dirichlet_means(means, means_name)
    alpha = np.maximum(precision * mean, MIN_CONCENTRATION)
    images_per_chunk = max(1, CHUNK_ROWS // per_image)
    clean_parts, pert_parts = [], []
    for start in tqdm(range(0, n, images_per_chunk), desc="partial Bayes table", disable=not verbose, leave=False):
        stop = min(n, start + images_per_chunk)
        gamma = rng.standard_gamma(np.repeat(alpha[start:stop], per_image, axis=0))
        sums = gamma.sum(axis=1, keepdims=True)
        rows = torch.from_numpy((gamma / sums).astype(np.float32))
        chunk_views = None if views is None else views[start:stop].repeat_interleave(per_image, dim=0)
        answers, keep = offline(rows, chunk_views)
        keep &= torch.from_numpy(sums[:, 0] > 0)
        clean_parts.append(rows[keep])
        pert_parts.append(answers[keep])
    table = LookupTable(torch.cat(clean_parts), torch.cat(pert_parts), n * per_image, per_image)
    logger.info("partial Bayes table: %d of %d draws kept (%d per image)", len(table), table.draws, per_image)
    if len(table) == 0:
        raise RuntimeError(f"every one of the {table.draws} partial Bayes draws was farther than eps from its "
                           "offline answer; nothing is left to match against")
    return table


def recover(table: LookupTable, received: torch.Tensor, delta: float, top1_filter: bool) -> torch.Tensor:
    """Partial Bayes recovery of received answers (N, C) with the compiled matcher (see modelguard_fast.ops.bayes)."""
    return BayesTable(table.clean, table.perturbed).recover(received.float().cpu(), delta=delta,
                                                            top1_filter=top1_filter).to(received.device)
