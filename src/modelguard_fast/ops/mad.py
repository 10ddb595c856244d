"""Batched MAD (Orekondy et al., "Prediction Poisoning"): oracles, objective and line search.

MAD answers y' = (1 - alpha) y + alpha y*, where the target y* maximises the
angle between G^T y* and G^T y, G being the Jacobian of the surrogate's
per-class NLL with respect to its last-layer weights W (C x d). The public
code builds G (C x C*d) with C backward passes per query. For a last layer
z = W h + b, row k of G is vec((p - e_k) h^T), with p = softmax(z) and h the
penultimate features, so for any vector v

    G^T v = vec((p * sum(v) - v) h^T)

and the objective ||G^T y*/||G^T y*|| - G^T y/||G^T y|| ||^2 equals
2 - 2 cos(p * sum(y*) - y*, p * sum(y) - y): h cancels. Only the surrogate's
softmax p is needed, so whole batches are solved with a few tensor ops. (The
tests keep a literal-Jacobian implementation that checks this to 1e-6.)

Every function here takes float64 tensors on any device: y (B, C) the
predictions, p (B, C) the surrogate's softmax of the same queries, top (B,)
the top-1 class of y.
"""

from __future__ import annotations

import torch

ORACLES = ("argmax", "extreme")
#: The public code adds this to the top class of every vertex target, then
#: renormalises, so that y* keeps the top-1 label strictly.
TOP_BUMP = 1e-5
#: The public greedy oracle scores candidates against (y + 1e-8) / sum, "to prevent underflow".
GREEDY_SHIFT = 1e-8
#: alpha = eps / (||y - y*||_1 + ALPHA_SHIFT), clamped to [0, 1].
ALPHA_SHIFT = 1e-7
#: Score of a candidate whose objective is undefined (a zero gradient direction):
#: below every real score (>= 0), so such candidates lose unless all are undefined.
UNDEFINED_SCORE = -0.5
# Rows per chunk times vertex sets per row, bounding the exhaustive oracle's memory.
_EXHAUSTIVE_CELLS = 1 << 22


def mad_objective(p: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p * sum(y*) - y*, p * sum(y) - y) for targets (B, C) or (B, V, C); shape (B,) or (B, V)."""
    b = p * y.sum(dim=-1, keepdim=True) - y
    q = p
    if targets.dim() == 3:
        b, q = b[:, None, :], p[:, None, :]
    a = q * targets.sum(dim=-1, keepdim=True) - targets
    return 2.0 - 2.0 * (a * b).sum(dim=-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def _row_terms(p: torch.Tensor, y: torch.Tensor):
    """b = p * sum(y) - y (the direction of G^T y), with ||p||^2, p.b and ||b|| per row."""
    b = p * y.sum(dim=1, keepdim=True) - y
    return b, (p * p).sum(dim=1), (p * b).sum(dim=1), b.norm(dim=1)


def _score(a_dot_b: torch.Tensor, a_sq: torch.Tensor, b_norm: torch.Tensor) -> torch.Tensor:
    score = 2.0 - 2.0 * a_dot_b / (a_sq.clamp_min(0.0).sqrt() * b_norm)
    return torch.where(torch.isfinite(score), score, torch.full_like(score, UNDEFINED_SCORE))


def _vertex_score(pm, bm, n, p_sq, p_dot_b, b_norm, p_top, b_top) -> torch.Tensor:
    """Objective of y* = (m + TOP_BUMP e_t) / (n + TOP_BUMP) for a vertex set m of size n holding t.

    pm = p.m and bm = b.m; with a = p - y* (y* sums to 1), a.b and ||a||^2
    follow from these sums without forming y*.
    """
    d = n + TOP_BUMP
    a_dot_b = p_dot_b - (bm + TOP_BUMP * b_top) / d
    a_sq = p_sq - 2.0 * (pm + TOP_BUMP * p_top) / d + (n + 2.0 * TOP_BUMP + TOP_BUMP**2) / (d * d)
    return _score(a_dot_b, a_sq, b_norm)


def _vertex_targets(members: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """The public code's target for each vertex set: uniform over it, top class bumped by TOP_BUMP."""
    t = members.to(torch.float64).scatter_add(
        1, top[:, None], torch.full((members.shape[0], 1), TOP_BUMP, dtype=torch.float64, device=members.device))
    return t / t.sum(dim=1, keepdim=True)


def vertex_masks(num_classes: int, device) -> torch.Tensor:
    """All 2^C subsets of the classes as 0/1 rows, in itertools.product([0, 1], repeat=C) order."""
    v = torch.arange(1 << num_classes, device=device)
    shifts = torch.arange(num_classes - 1, -1, -1, device=device)
    return ((v[:, None] >> shifts) & 1).to(torch.float64)


def argmax_exhaustive(p: torch.Tensor, y: torch.Tensor, top: torch.Tensor,
                      masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best vertex target over every vertex set that holds the top class (first best in product order).

    `masks` comes from vertex_masks(C). Returns the targets (B, C) and their objective (B,).
    """
    b, p_sq, p_dot_b, b_norm = _row_terms(p, y)
    n = masks.sum(dim=1)
    p_top, b_top = p.gather(1, top[:, None]), b.gather(1, top[:, None])
    scores = _vertex_score(p @ masks.T, b @ masks.T, n, p_sq[:, None], p_dot_b[:, None], b_norm[:, None],
                           p_top, b_top)
    holds_top = masks.T[top] > 0
    scores = torch.where(holds_top, scores, torch.full_like(scores, -torch.inf))
    best = scores.argmax(dim=1)
    return _vertex_targets(masks[best] > 0, top), scores.gather(1, best[:, None])[:, 0]


def argmax_greedy(p: torch.Tensor, y: torch.Tensor, top: torch.Tensor,
                  max_evals: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The public code's greedy search over vertex sets, for every row at once.

    Starting from {top}, each round scores adding every class not yet in the
    set, keeps the best addition (lowest class on ties) and grows the set,
    until max_evals candidates have been scored (a round is always finished)
    or every class is in. The answer is the best candidate seen in any round.
    Candidates are scored against (y + 1e-8) / sum, as the public code does.
    """
    B, C = y.shape
    shifted = y + GREEDY_SHIFT
    b, p_sq, p_dot_b, b_norm = _row_terms(p, shifted / shifted.sum(dim=1, keepdim=True))
    p_top, b_top = p.gather(1, top[:, None]), b.gather(1, top[:, None])
    members = torch.zeros((B, C), dtype=torch.bool, device=y.device).scatter_(1, top[:, None], True)
    pm, bm = p_top[:, 0].clone(), b_top[:, 0].clone()
    best_score = torch.full((B,), -1.0, dtype=torch.float64, device=y.device)
    best_members = members.clone()
    size, evals = 1, 0
    while evals < max_evals and size < C:
        scores = _vertex_score(pm[:, None] + p, bm[:, None] + b, size + 1, p_sq[:, None], p_dot_b[:, None],
                               b_norm[:, None], p_top, b_top)
        scores = scores.masked_fill(members, -torch.inf)
        k = scores.argmax(dim=1, keepdim=True)
        score = scores.gather(1, k)[:, 0]
        members = members.scatter(1, k, True)
        better = score > best_score
        best_score = torch.where(better, score, best_score)
        best_members = torch.where(better[:, None], members, best_members)
        pm = pm + p.gather(1, k)[:, 0]
        bm = bm + b.gather(1, k)[:, 0]
        evals += C - size
        size += 1
    return _vertex_targets(best_members, top), best_score


def extreme(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best one-hot target e_k over all classes (lowest k on ties)."""
    b, p_sq, p_dot_b, b_norm = _row_terms(p, y)
    scores = _score(p_dot_b[:, None] - b, p_sq[:, None] - 2.0 * p + 1.0, b_norm[:, None])
    best = scores.argmax(dim=1, keepdim=True)
    return torch.zeros_like(y).scatter_(1, best, 1.0), scores.gather(1, best)[:, 0]


def mad_targets(p: torch.Tensor, y: torch.Tensor, top: torch.Tensor, oracle: str = "argmax",
                max_evals: int = 1024, exhaustive_max_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """MAD's target y* for every row and its objective value.

    oracle="argmax": vertex targets holding the top class (top-1 preserving),
    searched exhaustively when C <= exhaustive_max_classes and greedily with
    max_evals scored candidates above. oracle="extreme": one-hot targets.
    """
    C = y.shape[1]
    if oracle == "extreme":
        return extreme(p, y)
    if C > exhaustive_max_classes:
        return argmax_greedy(p, y, top, max_evals)
    masks = vertex_masks(C, y.device)
    rows = max(1, _EXHAUSTIVE_CELLS // masks.shape[0])
    parts = [argmax_exhaustive(p[i:i + rows], y[i:i + rows], top[i:i + rows], masks)
             for i in range(0, y.shape[0], rows)]
    return torch.cat([t for t, _ in parts]), torch.cat([v for _, v in parts])


def line_search(y: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """y' = (1 - alpha) y + alpha y*, alpha = clamp(eps / (||y - y*||_1 + 1e-7), 0, 1): the public closed form."""
    alpha = (eps / ((y - targets).abs().sum(dim=1, keepdim=True) + ALPHA_SHIFT)).clamp(0.0, 1.0)
    return (1.0 - alpha) * y + alpha * targets
