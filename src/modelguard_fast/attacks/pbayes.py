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

from ..defense import Defense
from ..ops.bayes import BayesTable

logger = logging.getLogger(__name__)

# Dirichlet concentrations are floored here: a clean prediction with an exact
# 0 entry (softmax underflow, one-hot answers) would give an invalid Dir(0).
MIN_CONCENTRATION = 1e-6
# Rows drawn and pushed through the defense at a time.
CHUNK_ROWS = 1 << 16


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


def draw_table(offline: Defense, means: torch.Tensor, table_size: int, precision: float,
               rng: np.random.Generator, views: Optional[torch.Tensor] = None, verbose: bool = False,
               means_name: str = "means") -> LookupTable:
    """K = max(1, table_size // len(means)) Dirichlet draws around each mean, pushed through the offline map.

    offline: the defense's offline_map() (modelguard_fast.defense), taken after the attacker's queries;
    its replay() answers the draws and flags those to drop (ModelGuard-S's fallbacks beyond eps).

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
        answers, keep = offline.replay(rows, chunk_views)
        keep = keep & torch.from_numpy(sums[:, 0] > 0)
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
