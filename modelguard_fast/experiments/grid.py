"""The paper's main experiment: every query strategy x attack strategy x defense, at one utility budget."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attacks import AttackConfig, run_attack
from ..metrics import utility_metrics
from .cache import Cache
from .setup import DEFENSE_NAMES, Setup, build_defense

log = logging.getLogger(__name__)

QUERIES = ("knockoff", "jbda")
STRATEGIES = ("naive", "top1", "s4l", "smoothing", "ddae", "ddae+", "pbayes")


def defended_test_predictions(defense, setup: Setup) -> np.ndarray:
    """The defense's answers to the target's test set, as the defender's utility sees them."""
    clean = torch.from_numpy(setup.clean_test)
    if defense.needs_query:
        out = defense(clean, defense.query_view(setup.splits.test_x.to(next(setup.target.parameters()).device)).cpu())
    else:
        out = defense(clean)
    return np.asarray(torch.as_tensor(out).cpu(), dtype=np.float64)


def utility(name: str, setup: Setup, eps: float, seed: int) -> dict[str, Any]:
    defense = build_defense(name, setup, eps=eps, seed=seed)
    metrics = utility_metrics(setup.clean_test, defended_test_predictions(defense, setup), setup.splits.test_y.numpy())
    return metrics.as_dict()


def run_grid(setup: Setup, cache: Cache, config: AttackConfig, budget: int, defenses, queries=QUERIES,
             strategies=STRATEGIES, eps: float = 1.0, device: str = "cpu", seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Runs (or reads from the cache) every cell; returns utility per defense and one record per cell."""
    cells, utilities = [], {}
    todo = [(d, q, s) for d in defenses for q in queries for s in strategies]
    bar = tqdm(todo, desc="attacks", disable=not progress, unit="cell")
    for name, query, strategy in bar:
        bar.set_postfix_str(f"{name}/{query}/{strategy}")
        if name not in utilities:
            spec = {**setup.spec, "params": setup.params, "defense": name, "eps": eps, "seed": seed}
            utilities[name] = cache.get_json("utility", spec)
            if utilities[name] is None:
                utilities[name] = utility(name, setup, eps, seed)
                cache.put_json("utility", spec, utilities[name])
        spec = {**setup.spec, "params": setup.params, "defense": name, "eps": eps, "query": query,
                "strategy": strategy, "budget": budget, "config": config.as_dict(), "seed": seed}
        record = cache.get_json("cell", spec)
        if record is None:
            started = time.perf_counter()
            result = run_attack(setup.target, build_defense(name, setup, eps=eps, seed=seed), setup.splits.pool_x,
                                setup.splits.test_x, setup.splits.test_y, query=query, strategy=strategy,
                                budget=budget, config=config, pool_y=setup.splits.pool_y, device=device, seed=seed)
            record = {"defense": DEFENSE_NAMES[name], "key": name, "query": query, "strategy": strategy,
                      "accuracy": result.accuracy, "fidelity": result.fidelity,
                      "recovery_distance": result.recovery_distance, "queries_used": result.queries_used,
                      "seconds": time.perf_counter() - started}
            cache.put_json("cell", spec, record)
            log.info("%s / %s / %s: accuracy %.4f", name, query, strategy, result.accuracy)
        cells.append(record)
    return {"utility": utilities, "cells": cells}
