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

from .config import ConfigError
from .grid import STRATEGIES, Cell, CellRunner, run_cells, utility
from .setup import DEFENSE_NAMES

SWEEP_DEFENSES = ("revsig", "mad", "mgw", "mgs")
SWEEP_EPS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
SWEEP_STRATEGIES = ("naive", "pbayes")


def check_sweep(eps_values: Sequence[float], defenses: Sequence[str], strategies: Sequence[str]) -> None:
    """ConfigError naming the setting, the value and what is allowed, for a bad sweep."""
    for key, values, allowed in (("defenses", defenses, SWEEP_DEFENSES), ("strategies", strategies, STRATEGIES)):
        if not values:
            raise ConfigError(f"sweep {key} must not be empty; choose from {', '.join(allowed)}")
        for value in values:
            if value not in allowed:
                raise ConfigError(f"sweep {key}: {value!r} is not allowed; choose from {', '.join(allowed)}")
    if not eps_values:
        raise ConfigError("sweep eps values must not be empty")
    for eps in eps_values:
        if not 0 < eps <= 2:
            raise ConfigError(f"sweep eps value {eps!r} is not allowed; use numbers in (0, 2]")


def run_sweep(runner: CellRunner, defenses: Sequence[str] = SWEEP_DEFENSES, eps_values: Sequence[float] = SWEEP_EPS,
              strategies: Sequence[str] = SWEEP_STRATEGIES, query: str = "knockoff", workers: int = 0,
              progress: bool = True) -> dict[str, Any]:
    """Cells of every (defense, eps, strategy) and of the undefended target; utility per (defense, eps)."""
    cells = [Cell("none", query, s) for s in strategies]
    cells += [Cell(d, query, s, float(e)) for d in defenses for e in eps_values for s in strategies]
    utilities = [{"defense": d, "eps": float(e), **utility(runner.setup, runner.cache, d, float(e), runner.seed)}
                 for d in ("none", *defenses) for e in ((1.0,) if d == "none" else eps_values)]
    return {"cells": run_cells(runner, cells, workers, progress, desc="sweep"), "utility": utilities,
            "strategies": list(strategies)}


def sweep_table(sweep: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """A row per (defense, eps): distortion, protected accuracy, extraction accuracy and recovery distance per
    strategy, and ModelGuard-S's centroid count after the attack's queries; the undefended target first."""
    strategies = sweep["strategies"]
    cells = {(c["defense"], c["eps"], c["strategy"]): c for c in sweep["cells"]}
    header = ["defense", "eps", "max L1", "mean L1", "protected acc.", "centroids",
              *[f"{s} acc." for s in strategies], *[f"{s} recovery dist." for s in strategies]]
    rows = []
    for u in sweep["utility"]:
        mine = [cells[u["defense"], u["eps"], s] for s in strategies]
        rows.append([DEFENSE_NAMES[u["defense"]], None if u["defense"] == "none" else u["eps"], u["max_l1"],
                     u["mean_l1"], u["protected_accuracy"], mine[0].get("centroids"), *[c["accuracy"] for c in mine],
                     *[c["recovery_distance"] for c in mine]])
    return header, rows
