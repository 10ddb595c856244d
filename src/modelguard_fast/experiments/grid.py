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
import pickle
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attacks import QUERY_STRATEGIES, RECOVERY_STRATEGIES, AttackConfig, run_attack, train_attack_shadows
from ..defenses.registry import DEFENSES
from ..metrics import utility_metrics
from ..training import predict_proba
from .cache import Cache
from .setup import Setup, build_defense, prepare
from .stats import bits
from .threads import single_threaded

log = logging.getLogger(__name__)

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
        defended = defense.defend(torch.from_numpy(setup.clean_test), setup.splits.test_x, batch_size=512)
        value = utility_metrics(setup.clean_test, defended.numpy().astype(np.float64),
                                setup.splits.test_y.numpy()).as_dict()
        cache.put_json("utility", spec, value)
    return value


class CellRunner:
    """Runs cells of one setup, attack configuration, budget and seed, and knows their cache keys."""

    def __init__(self, setup: Setup, cache: Cache | None, config: AttackConfig, budget: int, device: str = "cpu",
                 seed: int = 0):
        self.setup, self.cache, self.config = setup, cache, config
        self.budget, self.device, self.seed = budget, device, seed
        self._shadows = None

    def recipe(self, whole: bool = False) -> dict[str, Any]:
        """What another process needs to rebuild this runner (runner_from_recipe): a named dataset's prepare()
        arguments and the cache's folder, read there; or, with `whole` or for a user's setup (no prepare
        arguments), the setup itself and the trained shadow models (then they must pickle), for a process that
        may not see this machine's disk (a Ray cluster)."""
        recipe = {"config": self.config.as_dict(), "budget": self.budget, "device": self.device, "seed": self.seed}
        if self.setup.prepare_args is not None and not whole:
            return {**recipe, "cache_root": str(self.cache.root), "prepare_args": self.setup.prepare_args}
        return {**recipe, "setup": self.setup, "shadows": self._shadows}

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
            top1 = predict_proba(result.substitute, splits.test_x).argmax(dim=1).cpu()
        record = {**asdict(cell), "name": DEFENSES[cell.defense].label, "accuracy": result.accuracy,
                  "fidelity": result.fidelity, "recovery_distance": result.recovery_distance,
                  "queries_used": result.queries_used, "table_rows": result.table_rows,
                  "seconds": time.perf_counter() - started}
        # Per test image: the substitute right (accuracy) and agreeing with the target (fidelity), for the
        # bootstrap intervals over test images (stats.py).
        record["test_images"] = len(splits.test_y)
        record["correct"] = bits((top1 == splits.test_y.cpu()).numpy())
        record["agree"] = bits((top1.numpy() == self.setup.clean_test.argmax(1)))
        if hasattr(defense, "num_centroids"):
            record["centroids"] = defense.num_centroids
        log.info("%s: accuracy %.4f (%.1f s)", cell, result.accuracy, record["seconds"])
        return record


def runner_from_recipe(recipe: dict[str, Any]) -> CellRunner:
    """The CellRunner that CellRunner.recipe() describes, rebuilt in another process: a named dataset is
    prepared again from the cache; a whole setup (and D-DAE's shadow models) is used as it came."""
    cache = Cache(recipe["cache_root"]) if "cache_root" in recipe else None
    setup = recipe.get("setup")
    if setup is None:
        setup = prepare(cache=cache, device=recipe["device"], **recipe["prepare_args"])
    runner = CellRunner(setup, cache, AttackConfig.from_dict(recipe["config"]), recipe["budget"], recipe["device"],
                        recipe["seed"])
    runner._shadows = recipe.get("shadows")
    return runner


class WorkerRunners:
    """The runners of one worker process, built from their recipes when first used."""

    def __init__(self, recipes: Sequence[dict[str, Any]]):
        self.recipes, self.runners = list(recipes), {}

    def run(self, index: int, cell: Cell) -> dict[str, Any]:
        if index not in self.runners:
            self.runners[index] = runner_from_recipe(self.recipes[index])
        return self.runners[index].run(cell)


_worker: WorkerRunners | None = None


def _start_worker(recipes: list[dict[str, Any]]) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = WorkerRunners(recipes)


def _run_in_worker(index: int, cell: Cell) -> dict[str, Any]:
    return _worker.run(index, cell)


def default_workers(device: str) -> int:
    """One worker per CPU core on the CPU; one on a GPU (cells then share the device)."""
    return 1 if torch.device(device).type != "cpu" else max(1, len(os.sched_getaffinity(0)))


Task = tuple[CellRunner, Cell]


def run_cells(runner: CellRunner, cells: Sequence[Cell], workers: int = 0, progress: bool = True,
              desc: str = "attacks") -> list[dict[str, Any]]:
    """Every cell's record, in the order of `cells` (see run_tasks)."""
    return run_tasks([(runner, cell) for cell in cells], workers, progress, desc)


def run_tasks(tasks: Sequence[Task], workers: int = 0, progress: bool = True, desc: str = "attacks",
              backend: str = "local", ray_address: str | None = None) -> list[dict[str, Any]]:
    """Every (runner, cell)'s record, in the order of `tasks`: read from the cache, or run and cached as each
    finishes. backend "local": in this process (workers 1) or in `workers` spawned processes (0:
    default_workers); "ray": as Ray tasks on the cluster at `ray_address` (None: a local instance), see
    experiments.cluster. Runners may differ (seeds, setups); the cells of a runner share its setup."""
    runners = list(dict.fromkeys(runner for runner, _ in tasks))
    index = {runner: i for i, runner in enumerate(runners)}
    keys = [(index[runner], cell) for runner, cell in tasks]
    records: dict[tuple[int, Cell], dict[str, Any]] = {}
    for key in dict.fromkeys(keys):
        cached = runners[key[0]].cache.get_json("cell", runners[key[0]].spec(key[1]))
        if cached is not None:
            records[key] = cached
    order = {key: i for i, key in reversed(list(enumerate(keys)))}
    # One runner (seed) after the other, so that an interrupted run has whole seeds; within it the long cells
    # first, to keep every worker busy to the end.
    todo = sorted(set(keys) - set(records), key=lambda k: (k[0], -_COST.get(k[1].strategy, 1) * (
        1.5 if k[1].query == "jbda" else 1), order[k]))
    total = len(order)
    bar = tqdm(total=total, initial=len(records), desc=desc, unit="cell", disable=not progress)

    def finished(key: tuple[int, Cell], record: dict[str, Any]) -> None:
        runners[key[0]].cache.put_json("cell", runners[key[0]].spec(key[1]), record)
        records[key] = record
        cell = key[1]
        bar.set_postfix_str(f"{cell.defense}/{cell.query}/{cell.strategy} {record['accuracy']:.3f}")
        bar.update()

    for i in dict.fromkeys(i for i, cell in todo if cell.strategy == "ddae"):
        runners[i].shadow_models()  # once, before the workers load them from the cache
    try:
        if backend == "ray":
            from .cluster import run_on_ray

            run_on_ray([runner.recipe(whole=True) for runner in runners], todo, finished, ray_address)
        else:
            _run_locally(runners, todo, finished, workers)
    finally:
        bar.close()
    return [records[key] for key in keys]


def check_pickles(recipes: list[dict[str, Any]], where: str) -> None:
    """TypeError, before anything runs, when a user's setup cannot travel to another process."""
    for recipe in recipes:
        if "setup" in recipe:
            try:
                pickle.dumps(recipe["setup"])
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                raise TypeError(f"with {where} the setup travels to other processes and must pickle, but it does "
                                f"not ({err}); use a module-level model factory (a class or def, not a lambda) "
                                "in user_setup(model=...), or run with workers=1") from None


def _run_locally(runners: list[CellRunner], todo: list[tuple[int, Cell]], finished, workers: int) -> None:
    workers = min(workers or default_workers(runners[0].device if runners else "cpu"), len(todo))
    if workers <= 1:
        for i, cell in todo:
            finished((i, cell), runners[i].run(cell))
        return
    recipes = [runner.recipe() for runner in runners]
    check_pickles(recipes, "workers > 1")
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(recipes,))
    try:
        futures = {pool.submit(_run_in_worker, *key): key for key in todo}
        for future in as_completed(futures):
            finished(futures[future], future.result())
    finally:  # on an error or Ctrl-C, drop the cells not started (the finished ones are cached)
        pool.shutdown(wait=True, cancel_futures=True)


def run_grid(runners: CellRunner | Sequence[CellRunner], defenses: Sequence[str], queries: Sequence[str] = tuple(QUERY_STRATEGIES),
             strategies: Sequence[str] = tuple(RECOVERY_STRATEGIES), eps: float = 1.0, workers: int = 0, progress: bool = True,
             backend: str = "local", ray_address: str | None = None) -> dict[str, Any]:
    """The paper's main experiment at one budget, for each runner (one per seed): utility per (seed, defense)
    and one record per (seed, cell), each with its "seed"."""
    runners = [runners] if isinstance(runners, CellRunner) else list(runners)
    cells = [Cell(d, q, s, eps) for d in defenses for q in queries for s in strategies]
    utilities = [{"seed": r.seed, "defense": d, **utility(r.setup, r.cache, d, eps, r.seed)}
                 for r in runners for d in defenses]
    tasks = [(r, cell) for r in runners for cell in cells]
    records = run_tasks(tasks, workers, progress, backend=backend, ray_address=ray_address)
    return {"utility": utilities, "cells": [{**record, "seed": r.seed} for (r, _), record in zip(tasks, records)],
            "seeds": [r.seed for r in runners]}
