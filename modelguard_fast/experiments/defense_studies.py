"""Experiments on the defenses alone (no attack): response time, OOD detection, centroid growth."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..training import predict_proba
from .setup import DEFENSE_NAMES, DEFENSES, Setup, build_defense


def _defend(defense, probs: torch.Tensor, x: torch.Tensor):
    return defense(probs, defense.query_view(x)) if defense.needs_query else defense(probs)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def response_times(setup: Setup, batch_sizes=(1, 256), eps: float = 1.0, repeats: int = 50,
                   device: str = "cpu") -> list[dict[str, Any]]:
    """Median seconds per query of each defense on top of the target's forward pass (Figure 6).

    Each timed call runs the target on a batch of test images and defends its
    softmax, on `device`, synchronised before the clock is read. ModelGuard-S
    is timed on codebooks grown over the test set first (a served state).
    """
    dev = torch.device(device)
    target = setup.target.to(dev)
    x_all = setup.splits.test_x.to(dev)
    rows = []
    for name in DEFENSES:
        defense = build_defense(name, setup, eps=eps)
        if defense.query_model is not None:
            defense.query_model.to(dev)
        if name == "mgs":
            defense(predict_proba(target, x_all))
        for batch in batch_sizes:
            x = x_all[:batch] if batch <= len(x_all) else x_all.repeat((batch + len(x_all) - 1) // len(x_all), 1, 1, 1)[:batch]
            times = []
            for i in range(repeats + 3):
                _synchronize(dev)
                start = time.perf_counter()
                with torch.no_grad():
                    _defend(defense, torch.softmax(target(x), dim=1), x)
                _synchronize(dev)
                if i >= 3:  # warm-up calls excluded
                    times.append(time.perf_counter() - start)
            rows.append({"defense": DEFENSE_NAMES[name], "batch": batch, "device": device,
                         "seconds_per_query": float(np.median(times)) / batch})
    return rows


def ood_auroc(setup: Setup, eps_values=(0.25, 0.5, 1.0, 1.5, 2.0)) -> list[dict[str, Any]]:
    """AUROC of the max defended probability for telling test images (ID) from outliers (Figure 5, left)."""
    from sklearn.metrics import roc_auc_score

    x = torch.cat([setup.splits.test_x, setup.outliers])
    is_id = np.r_[np.ones(len(setup.splits.test_x)), np.zeros(len(setup.outliers))]
    clean = predict_proba(setup.target, x).cpu()
    rows = [{"defense": "None", "eps": 0.0, "auroc": float(roc_auc_score(is_id, clean.max(1).values.numpy()))}]
    for name in ("mgw", "mgs", "mad"):
        for eps in eps_values:
            defended = torch.as_tensor(_defend(build_defense(name, setup, eps=eps), clean, x))
            rows.append({"defense": DEFENSE_NAMES[name], "eps": eps,
                         "auroc": float(roc_auc_score(is_id, defended.max(1).values.numpy()))})
    return rows


def centroid_growth(setup: Setup, queries: torch.Tensor, eps_values=(0.5, 1.0, 1.5),
                    checkpoints: int = 20) -> list[dict[str, Any]]:
    """Number of ModelGuard-S centroids after each prefix of a query stream (Figure 5, right)."""
    probs = predict_proba(setup.target, queries).cpu()
    marks = np.unique(np.linspace(1, len(probs), checkpoints).astype(int))
    rows = []
    for eps in eps_values:
        guard = build_defense("mgs", setup, eps=eps)
        done = 0
        for mark in marks:
            guard(probs[done:mark])
            done = mark
            rows.append({"eps": eps, "queries": int(mark), "centroids": guard.num_centroids})
    return rows
