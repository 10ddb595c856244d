"""The privacy-utility sweep (the paper's Figure 3) and ModelGuard-S's recovery against its codebook size (Figure 4).

Every defense with an L1 budget is attacked at each budget eps: MAD, ModelGuard-W
and ModelGuard-S take eps directly; Reverse Sigmoid's beta is calibrated so that
its largest L1 distortion on the test predictions is about eps (Setup.revsig_beta).
The undefended target is the reference. ModelGuard-S's codebook grows with the
attacker's queries and shrinks with eps, so its cells also give Figure 4: the
partial Bayes attack's accuracy and recovery distance against the number of
centroids.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import params
from .config import ConfigError
from ..attacks import RECOVERY_STRATEGIES
from ..defenses.registry import DEFENSES
from .grid import Cell, CellRunner, run_tasks, utility
from .stats import cell_interval

#: The defenses with an L1 budget (DefenseSpec.budgeted), in table order.
SWEEP_DEFENSES = tuple(key for key, spec in DEFENSES.items() if spec.budgeted)
SWEEP_EPS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
SWEEP_STRATEGIES = ("naive", "pbayes")


def check_sweep(eps_values: Sequence[float], defenses: Sequence[str], strategies: Sequence[str]) -> None:
    """ConfigError naming the setting, the value and what is allowed, for a bad sweep."""
    for key, values, allowed in (("defenses", defenses, SWEEP_DEFENSES), ("strategies", strategies, RECOVERY_STRATEGIES)):
        if not values:
            raise ConfigError(f"sweep {key} must not be empty; choose from {', '.join(allowed)}")
        for value in values:
            if value not in allowed:
                raise ConfigError(f"sweep {key}: {value!r} is not allowed; choose from {', '.join(allowed)}")
    try:
        params.eps_values(eps_values, "sweep eps values")
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def run_sweep(runners: CellRunner | Sequence[CellRunner], defenses: Sequence[str] = SWEEP_DEFENSES,
              eps_values: Sequence[float] = SWEEP_EPS, strategies: Sequence[str] = SWEEP_STRATEGIES,
              query: str = "knockoff", workers: int = 0, progress: bool = True, backend: str = "local",
              ray_address: str | None = None) -> dict[str, Any]:
    """Cells of every (defense, eps, strategy) and of the undefended target, for each runner (one per seed);
    utility per (seed, defense, eps). Every record carries its "seed"."""
    runners = [runners] if isinstance(runners, CellRunner) else list(runners)
    cells = [Cell("none", query, s) for s in strategies]
    cells += [Cell(d, query, s, float(e)) for d in defenses for e in eps_values for s in strategies]
    utilities = [{"seed": r.seed, "defense": d, "eps": float(e), **utility(r.setup, r.cache, d, float(e), r.seed)}
                 for r in runners for d in ("none", *defenses) for e in ((1.0,) if d == "none" else eps_values)]
    tasks = [(r, cell) for r in runners for cell in cells]
    records = run_tasks(tasks, workers, progress, desc="sweep", backend=backend, ray_address=ray_address)
    return {"cells": [{**record, "seed": r.seed} for (r, _), record in zip(tasks, records)], "utility": utilities,
            "strategies": list(strategies), "seeds": [r.seed for r in runners]}


def _mean(values: list[Any]) -> Any:
    """The one value itself, else the mean (None if any is None)."""
    if len(values) == 1:
        return values[0]
    return None if any(v is None for v in values) else float(np.mean(values))


def sweep_table(sweep: dict[str, Any], intervals: bool = False) -> tuple[list[str], list[list[Any]]]:
    """A row per (defense, eps): distortion, protected accuracy, extraction accuracy and recovery distance per
    strategy, and ModelGuard-S's centroid count after the attack's queries; the undefended target first. Each
    value is the mean over the seeds (max L1: the largest); with `intervals`, the accuracies are
    "mean [low, high]" (95%, stats.cell_interval)."""
    strategies = sweep["strategies"]
    cells: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for c in sweep["cells"]:
        cells.setdefault((c["defense"], c["eps"], c["strategy"]), []).append(c)
    utilities: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for u in sweep["utility"]:
        utilities.setdefault((u["defense"], u["eps"]), []).append(u)
    header = ["defense", "eps", "max L1", "mean L1", "protected acc.", "centroids",
              *[f"{s} acc." for s in strategies], *[f"{s} recovery dist." for s in strategies]]
    rows = []
    for (defense, eps), us in utilities.items():
        mine = [cells[defense, eps, s] for s in strategies]
        accuracy = [cell_interval(records) for records in mine]
        rows.append([DEFENSES[defense].label, None if defense == "none" else eps, max(u["max_l1"] for u in us),
                     _mean([u["mean_l1"] for u in us]), _mean([u["protected_accuracy"] for u in us]),
                     _mean([c.get("centroids") for c in mine[0]]),
                     *[iv.format() if intervals else iv.mean for iv in accuracy],
                     *[_mean([c["recovery_distance"] for c in records]) for records in mine]])
    return header, rows
