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

from ..attacks import RECOVERY_STRATEGIES, AttackConfig
from ..defenses.registry import DEFENSES
from ..persistence.atomic import write_atomically
from .cache import Cache
from .config import ConfigError, RunConfig
from .findings import findings_markdown, paper_findings
from .grid import CellRunner, check_pickles, run_grid
from .plots import plot_centroids, plot_grid, plot_sweep
from .report import (grid_interval_table, grid_intervals, grid_table, intervals_record, markdown, versions,
                     write_outputs)
from .setup import Setup, prepare
from .stats import interval_method
from .sweep import SWEEP_DEFENSES, SWEEP_EPS, SWEEP_STRATEGIES, run_sweep, sweep_table


def _start(config: RunConfig, setup: Setup | None = None, attack: AttackConfig | None = None
           ) -> tuple[Path, Setup, list[CellRunner]]:
    """The results folder, the first seed's setup and one runner per seed (RunConfig.replicate_seeds); a
    user's `setup` (experiments.user.user_setup) replaces the named dataset, `attack` the [attack] table.
    A bad argument is refused before anything is written."""
    if setup is not None:
        if not isinstance(setup, Setup):
            raise TypeError(f"setup must be an experiments Setup (from user_setup), got {type(setup).__name__}")
        if config.vary_target:
            raise ConfigError("run.vary_target = true needs a named dataset: a given setup has one target")
        if attack is None:
            attack = _small_attack(config)
        if config.backend == "ray":
            check_pickles([{"setup": setup}], "the Ray backend")
        elif config.workers != 1:
            check_pickles([{"setup": setup}], "workers > 1")
        _check_budget(config.budget, setup)
    if attack is not None and not isinstance(attack, AttackConfig):
        raise TypeError(f"attack must be an AttackConfig, got {type(attack).__name__}")
    cache = Cache(Path(config.results_dir) / "cache")
    setups: dict[int, Setup] = {} if setup is None else {config.seed: setup}
    runners = []
    for seed in config.replicate_seeds():
        setup_seed = seed if config.vary_target else config.seed
        if setup_seed not in setups:
            setups[setup_seed] = prepare(config.dataset, cache, device=config.device, seed=setup_seed,
                                         target_epochs=config.target_epochs, data_root=config.data_root or None)
        mine = setups[setup_seed]
        budget = _check_budget(config.budget, mine)
        runners.append(CellRunner(mine, cache, config.attack_config_for(seed, attack), budget, config.device, seed))
    return Path(config.results_dir) / runners[0].setup.dataset, runners[0].setup, runners


def _check_budget(budget: int, setup: Setup) -> int:
    """The budget in images (0: the whole pool); ConfigError when it exceeds the pool."""
    pool = len(setup.splits.pool_x)
    if budget > pool:
        raise ConfigError(f"run.budget = {budget} is not allowed; the attacker's pool has {pool} images (use at "
                          "most that, or 0 for all of them)")
    return budget or pool


def _small_attack(config: RunConfig) -> AttackConfig:
    try:
        return AttackConfig.small(**config.attack)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[attack]: {err}") from None


def _available(setup: Setup, defenses: Sequence[str], strategies: Sequence[str]
               ) -> tuple[list[str], list[str], list[str]]:
    """The defenses and strategies the setup can run, and a note for each left out."""
    notes = []
    for key in defenses:
        if key not in setup.defenses:
            notes.append(f"{DEFENSES[key].label} is left out: it needs outliers and a training set (user_setup("
                         "outliers=..., train=...)) for its misinformation model.")
    unlabelled = [s for s in strategies if RECOVERY_STRATEGIES[s].needs_pool_labels and setup.splits.pool_y is None]
    for key in unlabelled:
        notes.append(f"{RECOVERY_STRATEGIES[key].label} is left out: its shadow models need the pool's labels "
                     "(user_setup(pool=(x, y))).")
    return [d for d in defenses if d in setup.defenses], [s for s in strategies if s not in unlabelled], notes


def _record(config: RunConfig, setup: Setup, runners: list[CellRunner], started: float, **more: Any
            ) -> dict[str, Any]:
    record = {"config": dataclasses.asdict(config), "attack_config": runners[0].config.as_dict(),
              "budget": runners[0].budget, "calibrated": setup.params,
              "target_test_accuracy": _target_accuracy(setup)}
    if len(runners) > 1:
        record["seeds"] = [{"seed": r.seed, "query_seed": r.config.query_seed, "setup_seed": r.setup.spec["seed"],
                            "calibrated": r.setup.params, "target_test_accuracy": _target_accuracy(r.setup)}
                           for r in runners]
    return {**record, **more, "seconds": time.perf_counter() - started, "versions": versions()}


def _target_accuracy(setup: Setup) -> float:
    return float((setup.clean_test.argmax(1) == setup.splits.test_y.numpy()).mean())


def _seeds_note(runners: list[CellRunner], config: RunConfig) -> str:
    seeds = [r.seed for r in runners]
    varied = "split, target, " if config.vary_target else ""
    return (f"{len(seeds)} seeds ({', '.join(map(str, seeds))}; each re-draws the {varied}query order and the "
            "attack's randomness); ")


def _interval_note(grid: dict[str, Any]) -> str:
    method = interval_method(grid["cells"])
    if method is None:
        return ("No intervals: the cells were cached without per-image results (by an older version); delete "
                "<results>/cache/cell to recompute them.")
    return (f"Mean [95% interval] per accuracy ({method}); max acc. and max fidelity: the cell of the largest "
            "mean, with its interval.")


def run_experiment(config: RunConfig, progress: bool = True, setup: Setup | None = None,
                   attack: AttackConfig | None = None) -> str:
    """The paper's table, every cell repeated over config.replicate_seeds(): writes results/<dataset>/
    table.{md,csv,json} (means; the JSON with every seed's record and every interval), table-ci.{md,csv} (mean
    and 95% interval per cell, see stats.py), findings.md (the paper's findings with their intervals, see
    findings.py) and table.png (with the spread over seeds); returns a Markdown report.

    `setup`: your own data and model (experiments.user.user_setup) instead of config.dataset; results then go
    to <results_dir>/<setup.dataset>/. `attack`: the attack settings (default: config's [attack] table over
    AttackConfig.small() for a user's setup and the bundled datasets, AttackConfig.paper() for CIFAR). A
    defense or strategy the setup cannot run (AM without outliers, D-DAE without pool labels) is left out,
    with a note in the report and the JSON.
    """
    started = time.perf_counter()
    folder, setup, runners = _start(config, setup, attack)
    defenses, strategies, notes = _available(setup, config.defenses, config.strategies)
    grid = run_grid(runners, defenses, config.queries, strategies, eps=config.eps,
                    workers=config.workers, progress=progress, backend=config.backend,
                    ray_address=config.ray_address or None)
    header, rows = grid_table(grid)
    _, ci_rows = grid_interval_table(grid)
    findings = paper_findings(grid)
    seeds = _seeds_note(runners, config) if len(runners) > 1 else ""
    summary = (f"{setup.dataset}: {seeds}target test accuracy {_target_accuracy(setup):.4f}; {runners[0].budget} "
               f"queries per attack; RevSig beta {setup.params['revsig_beta']:.4g}" + (
                   f", AM tau {setup.params['am_tau']:.2f}" if "am_tau" in setup.params else "") +
               f" (calibrated); eps {config.eps}.")
    write_outputs(folder, "table", header, rows,
                  _record(config, setup, runners, started, cells=grid["cells"], utility=grid["utility"],
                          intervals=intervals_record(grid), findings=[f.as_dict() for f in findings],
                          **({"notes": notes} if notes else {})))
    write_outputs(folder, "table-ci", header, ci_rows, None)
    text = findings_markdown(findings) + "\n"
    write_atomically(folder / "findings.md", lambda f: f.write(text.encode()))
    spread = None
    if len(runners) > 1:
        worst = grid_intervals(grid)["defenses"]
        spread = [(w["max_accuracy"][1].low, w["max_accuracy"][1].high, w["max_accuracy"][1].values)
                  for w in worst.values()]
    plot_grid(header, rows, folder / "table.png", title=summary.split(";")[0], spread=spread)
    return (f"{summary}\n\n{''.join(n + chr(10) for n in notes)}{_interval_note(grid)}\n\n"
            f"{markdown(header, ci_rows)}\n\nThe paper's findings (95% intervals of paired differences):\n"
            f"{text}\nWritten to {folder}/table.{{md,csv,json,png}}, table-ci.{{md,csv}} and findings.md in "
            f"{time.perf_counter() - started:.0f} s.")


def run_sweep_experiment(config: RunConfig, eps_values: Sequence[float] = SWEEP_EPS,
                         defenses: Sequence[str] = SWEEP_DEFENSES, strategies: Sequence[str] = SWEEP_STRATEGIES,
                         progress: bool = True, setup: Setup | None = None, attack: AttackConfig | None = None
                         ) -> str:
    """The privacy-utility sweep (Figure 3) and ModelGuard-S's recovery against its centroids (Figure 4), with
    KnockoffNets queries, every cell repeated over config.replicate_seeds(): writes results/<dataset>/
    sweep.{md,csv,json,png}, sweep-ci.{md,csv} (mean and 95% interval) and centroids.png. `setup` and
    `attack` as for run_experiment."""
    started = time.perf_counter()
    folder, setup, runners = _start(config, setup, attack)
    _, strategies, notes = _available(setup, (), strategies)
    sweep = run_sweep(runners, defenses, eps_values, strategies, workers=config.workers, progress=progress,
                      backend=config.backend, ray_address=config.ray_address or None)
    header, rows = sweep_table(sweep)
    _, ci_rows = sweep_table(sweep, intervals=True)
    write_outputs(folder, "sweep", header, rows,
                  _record(config, setup, runners, started, eps_values=list(eps_values), cells=sweep["cells"],
                          utility=sweep["utility"], **({"notes": notes} if notes else {})))
    write_outputs(folder, "sweep-ci", header, ci_rows, None)
    written = ["sweep.{md,csv,json,png}", "sweep-ci.{md,csv}"]
    plot_sweep(header, rows, list(strategies), folder / "sweep.png", title=f"{setup.dataset}: privacy against utility")
    if "mgs" in defenses and "pbayes" in strategies:
        plot_centroids(header, rows, folder / "centroids.png")
        written.append("centroids.png")
    seeds = _seeds_note(runners, config) if len(runners) > 1 else ""
    return (f"{setup.dataset}: {seeds}{runners[0].budget} KnockoffNets queries per attack; RevSig beta calibrated "
            f"to each eps.\n\n{''.join(n + chr(10) for n in notes)}{_interval_note(sweep)}\n\n{markdown(header, ci_rows)}\n\nWritten to "
            f"{folder}/{', '.join(written)} in {time.perf_counter() - started:.0f} s.")
