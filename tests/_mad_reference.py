"""MAD as the public prediction-poisoning code computes it: one query at a time, with the literal Jacobian.

For each query the surrogate's per-class NLL is differentiated with respect
to its last-layer weights (parameters()[-2], as the public code picks them),
one backward pass per class, giving G (C x C*d). The oracles, objective and
closed-form line search follow the public code step by step. Used by the
tests (to prove the batched, Jacobian-free implementation) and by the
benchmark (as the baseline it is timed against).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

TOP_BUMP = 1e-5


def jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """G: row k is the gradient of -log softmax_k(model(x)) w.r.t. the last-layer weights; x is one query."""
    weight = list(model.parameters())[-2]
    with torch.enable_grad():
        nlls = -F.log_softmax(model(x), dim=1).mean(dim=0)
        rows = [torch.autograd.grad(nlls[k], weight, retain_graph=True)[0].flatten().clone()
                for k in range(nlls.shape[0])]
    return torch.stack(rows)


def objective(ytilde: torch.Tensor, y: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """||G^T y~/||G^T y~|| - G^T y/||G^T y|| ||^2 (the public calc_objective); ytilde may be (C,) or (C, N)."""
    u = G.T @ ytilde
    u = u / u.norm(dim=0)
    v = G.T @ y
    v = v / v.norm(dim=0)
    return (u - v.reshape(v.shape[0], *([1] * (u.dim() - 1)))).norm(dim=0) ** 2


def oracle_extreme(G, y):
    best_k, best_val = -1, -1.0
    for k in range(y.shape[0]):
        yk = torch.zeros_like(y)
        yk[k] = 1.0
        val = float(objective(yk, y, G))
        if val > best_val:
            best_k, best_val = k, val
    ystar = torch.zeros_like(y)
    ystar[best_k] = 1.0
    return ystar, best_val


def oracle_argmax_exhaustive(G, y):
    top = int(y.argmax())
    vertices = np.asarray(list(itertools.product([0, 1], repeat=y.shape[0])), dtype=np.float64)
    vertices = vertices[vertices[:, top] > 0]
    ystar, best_val = None, -1.0
    for vertex in vertices:
        vertex[top] += TOP_BUMP
        vertex = torch.as_tensor(vertex / vertex.sum(), dtype=y.dtype)
        val = float(objective(vertex, y, G))
        if val > best_val:
            ystar, best_val = vertex, val
    return ystar, best_val


def oracle_argmax_greedy(G, y, max_iters=1024):
    K = y.shape[0]
    top = int(y.argmax())
    y_shifted = y + 1e-8
    y_shifted = y_shifted / y_shifted.sum()
    ystar, best_val, niters = None, -1.0, 0
    fixed = [top]
    while niters < max_iters:
        previous = torch.zeros(K, dtype=y.dtype)
        previous[fixed] = 1.0
        candidates = sorted(set(range(K)) - set(fixed))
        if not candidates:  # the public code crashes here; the library stops
            break
        batch = []
        for k in candidates:
            vertex = previous.clone()
            vertex[k] = 1.0
            vertex[top] += TOP_BUMP
            batch.append(vertex / vertex.sum())
        batch = torch.stack(batch).T
        vals = objective(batch, y_shifted, G)
        i = int(vals.argmax())
        if float(vals[i]) > best_val:
            best_val, ystar = float(vals[i]), batch[:, i]
        fixed.append(candidates[i])
        niters += len(candidates)
    return ystar, best_val


def line_search(y, ystar, eps):
    alpha = (eps / ((y - ystar).norm(p=1) + 1e-7)).clamp(min=0.0, max=1.0)
    return (1 - alpha) * y + alpha * ystar


def mad_row(model, x, y, eps, oracle="argmax", max_evals=1024, exhaustive_max_classes=10):
    """The public MAD for one query x (1, ...) with clean prediction y (C,): (y', y*, objective of y*)."""
    G = jacobian(model, x)
    if oracle == "extreme":
        ystar, val = oracle_extreme(G, y)
    elif y.shape[0] > exhaustive_max_classes:
        ystar, val = oracle_argmax_greedy(G, y, max_evals)
    else:
        ystar, val = oracle_argmax_exhaustive(G, y)
    return line_search(y, ystar, eps), ystar, val


def mad_rows(model, x, y, eps, **kwargs):
    """mad_row over a batch, as the public code loops over it."""
    out = [mad_row(model, x[i:i + 1], y[i], eps, **kwargs) for i in range(y.shape[0])]
    return (torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]),
            torch.tensor([o[2] for o in out], dtype=torch.float64))
