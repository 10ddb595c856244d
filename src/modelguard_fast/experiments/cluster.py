"""The Ray backend of the experiment grids: every attack cell a Ray task (`--backend ray`).

Cells are independent and cached by everything they depend on, so they map
onto Ray tasks directly. Each runner's setup (data, target, misinformation
model) and D-DAE shadow models are put in Ray's object store once
(`ray.put`), not once per task, so a worker on another node needs neither
this machine's disk nor its cache. Each task declares one CPU (it trains with
one torch thread, as the local worker processes do, so the numbers are the
same) and, on a GPU run, one GPU. Results come back to this process as they
finish (`ray.wait`), which writes the cache, as the local backend does: an
interrupted run resumes the same way.

Ray is an optional extra: `pip install "modelguard_fast[cluster]"`. With
`address=None` a local Ray instance is started for the run and stopped after
it; `address="auto"` joins the cluster that `ray start --head` started on
this machine, `"ray://<head>:10001"` a remote one (Ray Client). A Ray that
the caller had already initialised is used as it is and left running.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

from .cache import cache_key
from .grid import check_pickles, runner_from_recipe

log = logging.getLogger(__name__)

INSTALL_HINT = 'the Ray backend needs Ray: pip install "modelguard_fast[cluster]" (or pip install "ray>=2.9")'


def import_ray():
    """The ray module, or ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


def ray_available() -> bool:
    try:
        import_ray()
    except ImportError:
        return False
    return True


_runners: dict[str, Any] = {}  # per Ray worker process: runners already built, by recipe key


def _recipe_key(recipe: dict[str, Any]) -> str:
    return cache_key({"spec": recipe["setup"].spec, "params": recipe["setup"].params,
                      **{k: v for k, v in recipe.items() if k not in ("setup", "shadows")}})


def _run_cell(recipes: list[dict[str, Any]], index: int, cell) -> dict[str, Any]:
    """The Ray task: one cell of runner `index` (rebuilt from its recipe once per worker process)."""
    torch.set_num_threads(1)
    recipe = recipes[index]
    key = _recipe_key(recipe)
    if key not in _runners:
        _runners[key] = runner_from_recipe(recipe)
    return _runners[key].run(cell)


def run_on_ray(recipes: list[dict[str, Any]], todo: Sequence[tuple[int, Any]],
               finished: Callable[[tuple[int, Any], dict[str, Any]], None], address: str | None = None) -> None:
    """Runs every (runner index, cell) of `todo` as a Ray task and calls `finished(key, record)` as each
    completes. `recipes`: grid.CellRunner.recipe(whole=True) of each runner."""
    ray = import_ray()
    if not todo:
        return
    check_pickles(recipes, "the Ray backend")
    started_here = not ray.is_initialized()
    if started_here:
        log.info("starting Ray (%s)", address or "a local instance")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    pending: dict[Any, tuple[int, Any]] = {}
    try:
        shared = ray.put(recipes)  # the setups and shadow models, once
        gpus = 1 if any(torch.device(r["device"]).type == "cuda" for r in recipes) else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_run_cell)
        pending = {task.remote(shared, index, cell): (index, cell) for index, cell in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key = pending.pop(ref)
                finished(key, ray.get(ref))
    finally:  # on an error or Ctrl-C, cancel what has not finished (the finished cells are cached)
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
