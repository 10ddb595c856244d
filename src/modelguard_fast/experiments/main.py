"""The experiments as Python calls (the CLI's `run` and `sweep`): resumable, with a record of everything.

They start worker processes (multiprocessing's spawn), so a script that calls
them must guard its entry point with `if __name__ == "__main__":`, or pass
RunConfig(workers=1).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from .cache import Cache
from .config import RunConfig
from .grid import CellRunner, run_grid
from .plots import plot_centroids, plot_grid, plot_sweep
from .report import grid_table, markdown, versions, write_outputs
from .setup import Setup, prepare
from .sweep import SWEEP_DEFENSES, SWEEP_EPS, SWEEP_STRATEGIES, run_sweep, sweep_table


def _start(config: RunConfig) -> tuple[Path, Setup, CellRunner]:
    cache = Cache(Path(config.results_dir) / "cache")
    setup = prepare(config.dataset, cache, device=config.device, seed=config.seed, target_epochs=config.target_epochs,
                    data_root=config.data_root or None)
    budget = config.budget or len(setup.splits.pool_x)
    runner = CellRunner(setup, cache, config.attack_config(), budget, config.device, config.seed)
    return Path(config.results_dir) / config.dataset, setup, runner


def _record(config: RunConfig, setup: Setup, runner: CellRunner, started: float, **more: Any) -> dict[str, Any]:
    return {"config": dataclasses.asdict(config), "attack_config": runner.config.as_dict(), "budget": runner.budget,
            "calibrated": setup.params, "target_test_accuracy": _target_accuracy(setup), **more,
            "seconds": time.perf_counter() - started, "versions": versions()}


def _target_accuracy(setup: Setup) -> float:
    return float((setup.clean_test.argmax(1) == setup.splits.test_y.numpy()).mean())


def run_experiment(config: RunConfig, progress: bool = True) -> str:
    """The paper's table: writes results/<dataset>/table.{md,csv,json} and table.png; returns a Markdown report."""
    started = time.perf_counter()
    folder, setup, runner = _start(config)
    grid = run_grid(runner, config.defenses, config.queries, config.strategies, eps=config.eps,
                    workers=config.workers, progress=progress)
    header, rows = grid_table(grid)
    summary = (f"{config.dataset}: target test accuracy {_target_accuracy(setup):.4f}; {runner.budget} queries per "
               f"attack; RevSig beta {setup.params['revsig_beta']:.4g}, AM tau {setup.params['am_tau']:.2f} "
               f"(calibrated); eps {config.eps}.")
    write_outputs(folder, "table", header, rows,
                  _record(config, setup, runner, started, cells=grid["cells"], utility=grid["utility"]))
    plot_grid(header, rows, folder / "table.png", title=summary.split(";")[0])
    return (f"{summary}\n\n{markdown(header, rows)}\n\n"
            f"Written to {folder}/table.{{md,csv,json,png}} in {time.perf_counter() - started:.0f} s.")


def run_sweep_experiment(config: RunConfig, eps_values: Sequence[float] = SWEEP_EPS,
                         defenses: Sequence[str] = SWEEP_DEFENSES, strategies: Sequence[str] = SWEEP_STRATEGIES,
                         progress: bool = True) -> str:
    """The privacy-utility sweep (Figure 3) and ModelGuard-S's recovery against its centroids (Figure 4), with
    KnockoffNets queries: writes results/<dataset>/sweep.{md,csv,json,png} and centroids.png."""
    started = time.perf_counter()
    folder, setup, runner = _start(config)
    sweep = run_sweep(runner, defenses, eps_values, strategies, workers=config.workers, progress=progress)
    header, rows = sweep_table(sweep)
    write_outputs(folder, "sweep", header, rows,
                  _record(config, setup, runner, started, eps_values=list(eps_values), cells=sweep["cells"],
                          utility=sweep["utility"]))
    written = ["sweep.{md,csv,json,png}"]
    plot_sweep(header, rows, list(strategies), folder / "sweep.png", title=f"{config.dataset}: privacy against utility")
    if "mgs" in defenses and "pbayes" in strategies:
        plot_centroids(header, rows, folder / "centroids.png")
        written.append("centroids.png")
    return (f"{config.dataset}: {runner.budget} KnockoffNets queries per attack; RevSig beta calibrated to each "
            f"eps.\n\n{markdown(header, rows)}\n\nWritten to {folder}/{', '.join(written)} in "
            f"{time.perf_counter() - started:.0f} s.")
