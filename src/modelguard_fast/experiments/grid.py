"""Grids of attack cells (defense x query strategy x attack strategy x L1 budget), cached and run in parallel.

Each cell trains its models with one torch thread, so a cell's numbers do not
depend on how many cells run at once or on the machine's core count; the
parallelism is across cells, in worker processes (spawned, so that no torch
thread pool is forked), each of which loads the prepared setup from the cache.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attacks import AttackConfig, run_attack, train_attack_shadows
from ..metrics import utility_metrics
from .cache import Cache
from .setup import DEFENSE_NAMES, Setup, build_defense, defend_on_cpu, prepare
from .threads import single_threaded

log = logging.getLogger(__name__)

QUERIES = ("knockoff", "jbda")
STRATEGIES = ("naive", "top1", "s4l", "smoothing", "ddae", "ddae+", "pbayes")
# Rough relative cost, to start the long cells first and keep every worker busy to the end.
_COST = {"s4l": 4, "ddae+": 3, "ddae": 2, "smoothing": 1.5}


@dataclass(frozen=True)
class Cell:
    defense: str
    query: str
    strategy: str
    eps: float = 1.0


def utility(setup: Setup, cache: Cache, name: str, eps: float, seed: int) -> dict[str, Any]:
    """Distortion and protected accuracy of defense `name` on the target's test set (cached)."""
    spec = {**setup.spec, "params": setup.params, "defense": name, "eps": eps, "seed": seed}
    value = cache.get_json("utility", spec)
    if value is None:
        defense = build_defense(name, setup, eps=eps, seed=seed)
        defended = defend_on_cpu(defense, torch.from_numpy(setup.clean_test), setup.splits.test_x)
        value = utility_metrics(setup.clean_test, defended.numpy().astype(np.float64),
                                setup.splits.test_y.numpy()).as_dict()
        cache.put_json("utility", spec, value)
    return value


class CellRunner:
    """Runs cells of one setup, attack configuration, budget and seed, and knows their cache keys."""

    def __init__(self, setup: Setup, cache: Cache, config: AttackConfig, budget: int, device: str = "cpu",
                 seed: int = 0):
        self.setup, self.cache, self.config = setup, cache, config
        self.budget, self.device, self.seed = budget, device, seed
        self._shadows = None

    def spec(self, cell: Cell) -> dict[str, Any]:
        return {**self.setup.spec, "params": self.setup.params, **asdict(cell), "budget": self.budget,
                "config": self.config.as_dict(), "seed": self.seed}

    def shadow_spec(self) -> dict[str, Any]:
        return {**self.setup.spec, "config": self.config.as_dict(), "seed": self.seed}  # the pool, not the budget

    def shadow_models(self) -> list[torch.nn.Module]:
        """D-DAE's shadow models: trained once per runner (they do not depend on defense or query), cached."""
        if self._shadows is None:
            splits, C = self.setup.splits, self.setup.num_classes
            spec = self.shadow_spec()
            models = [self.setup.new_model() for _ in range(self.config.ddae_shadow_models)]
            if not all(self.cache.load_weights(f"shadow{i}", spec, m) for i, m in enumerate(models)):
                log.info("training %d D-DAE shadow models", len(models))
                with single_threaded():
                    models = train_attack_shadows(splits.pool_x, splits.pool_y, C, self.config, seed=self.seed,
                                                  device=self.device, shadow=self.setup.new_model)
                for i, model in enumerate(models):
                    self.cache.save_weights(f"shadow{i}", spec, model)
            self._shadows = [m.to(self.device).eval().requires_grad_(False) for m in models]
        return self._shadows

    def run(self, cell: Cell) -> dict[str, Any]:
        """Runs one cell (not cached); returns its record."""
        splits = self.setup.splits
        defense = build_defense(cell.defense, self.setup, eps=cell.eps, seed=self.seed)
        started = time.perf_counter()
        with single_threaded():
            result = run_attack(self.setup.target, defense, splits.pool_x, splits.test_x, splits.test_y,
                                query=cell.query, strategy=cell.strategy, budget=self.budget, config=self.config,
                                pool_y=splits.pool_y, device=self.device, seed=self.seed,
                                substitute=self.setup.new_model,
                                shadow_models=self.shadow_models() if cell.strategy == "ddae" else None)
        record = {**asdict(cell), "name": DEFENSE_NAMES[cell.defense], "accuracy": result.accuracy,
                  "fidelity": result.fidelity, "recovery_distance": result.recovery_distance,
                  "queries_used": result.queries_used, "table_rows": result.table_rows,
                  "seconds": time.perf_counter() - started}
        if hasattr(defense, "num_centroids"):
            record["centroids"] = defense.num_centroids
        log.info("%s: accuracy %.4f (%.1f s)", cell, result.accuracy, record["seconds"])
        return record


_worker: CellRunner | None = None


def _start_worker(prepare_args: dict[str, Any], cache_root: str, config: dict[str, Any], budget: int, device: str,
                  seed: int) -> None:
    global _worker
    torch.set_num_threads(1)
    cache = Cache(cache_root)
    setup = prepare(cache=cache, device=device, **prepare_args)
    _worker = CellRunner(setup, cache, AttackConfig.from_dict(config), budget, device, seed)


def _run_in_worker(cell: Cell) -> dict[str, Any]:
    return _worker.run(cell)


def default_workers(device: str) -> int:
    """One worker per CPU core on the CPU; one on a GPU (cells then share the device)."""
    return 1 if torch.device(device).type != "cpu" else max(1, len(os.sched_getaffinity(0)))


def run_cells(runner: CellRunner, cells: Sequence[Cell], workers: int = 0, progress: bool = True,
              desc: str = "attacks") -> list[dict[str, Any]]:
    """Every cell's record, in the order of `cells`: read from the cache, or run (in `workers` processes
    when more than one; 0: default_workers) and cached as each finishes."""
    records: dict[Cell, dict[str, Any]] = {}
    for cell in cells:
        cached = runner.cache.get_json("cell", runner.spec(cell))
        if cached is not None:
            records[cell] = cached
    todo = sorted(set(cells) - set(records), key=lambda c: (-_COST.get(c.strategy, 1) * (1.5 if c.query == "jbda"
                                                                                        else 1), cells.index(c)))
    workers = min(workers or default_workers(runner.device), len(todo))
    bar = tqdm(total=len(cells), initial=len(records), desc=desc, unit="cell", disable=not progress)

    def finished(cell: Cell, record: dict[str, Any]) -> None:
        runner.cache.put_json("cell", runner.spec(cell), record)
        records[cell] = record
        bar.set_postfix_str(f"{cell.defense}/{cell.query}/{cell.strategy} {record['accuracy']:.3f}")
        bar.update()

    if any(c.strategy == "ddae" for c in todo):
        runner.shadow_models()  # once, before the workers load them from the cache
    if workers <= 1:
        for cell in todo:
            finished(cell, runner.run(cell))
    else:
        args = (runner.setup.prepare_args, str(runner.cache.root), runner.config.as_dict(), runner.budget,
                runner.device, runner.seed)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=args)
        try:
            futures = {pool.submit(_run_in_worker, cell): cell for cell in todo}
            for future in as_completed(futures):
                finished(futures[future], future.result())
        finally:  # on an error or Ctrl-C, drop the cells not started (the finished ones are cached)
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return [records[cell] for cell in cells]


def run_grid(runner: CellRunner, defenses: Sequence[str], queries: Sequence[str] = QUERIES,
             strategies: Sequence[str] = STRATEGIES, eps: float = 1.0, workers: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """The paper's main experiment at one budget: utility per defense and one record per cell."""
    cells = [Cell(d, q, s, eps) for d in defenses for q in queries for s in strategies]
    utilities = {d: utility(runner.setup, runner.cache, d, eps, runner.seed) for d in defenses}
    return {"utility": utilities, "cells": run_cells(runner, cells, workers, progress)}
