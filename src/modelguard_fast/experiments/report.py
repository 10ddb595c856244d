"""Tables of experiment results: Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, cuda_built
from ..persistence.atomic import write_atomically
from ..attacks import QUERY_STRATEGIES, RECOVERY_STRATEGIES
from ..defenses.registry import DEFENSES
from .stats import LEVEL, cell_interval, interval_method



def _cells_by_key(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Each (defense, query, strategy)'s records, one per seed, in the order they first appear."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for c in cells:
        grouped.setdefault((c["defense"], c["query"], c["strategy"]), []).append(c)
    return grouped


def grid_intervals(grid: dict[str, Any]) -> dict[str, Any]:
    """Per defense, its cells' accuracy and fidelity as stats.Interval (mean and 95% interval over the seeds,
    or over test images with one seed), and its worst case: the cell of the largest mean accuracy (not the
    luckiest seed) with that cell's interval, likewise for fidelity.

    Returns {"columns": [(query, strategy)], "defenses": {defense: {"accuracy": {column: Interval},
    "fidelity": {column: Interval}, "max_accuracy": (column, Interval), "max_fidelity": (column, Interval)}}}.
    """
    grouped = _cells_by_key(grid["cells"])
    columns = list(dict.fromkeys((q, s) for _, q, s in grouped))
    defenses = {}
    for defense in dict.fromkeys(d for d, _, _ in grouped):
        mine = {col: grouped[(defense, *col)] for col in columns if (defense, *col) in grouped}
        acc = {col: cell_interval(records, "accuracy") for col, records in mine.items()}
        fid = {col: cell_interval(records, "fidelity") for col, records in mine.items()}
        defenses[defense] = {"accuracy": acc, "fidelity": fid,
                             "max_accuracy": max(acc.items(), key=lambda item: item[1].mean),
                             "max_fidelity": max(fid.items(), key=lambda item: item[1].mean)}
    return {"columns": columns, "defenses": defenses}


def _utility_by_defense(grid: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per defense: the largest max L1 over the seeds and the mean protected accuracy."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for u in grid["utility"]:
        grouped.setdefault(u["defense"], []).append(u)
    return {d: (max(u["max_l1"] for u in us), float(np.mean([u["protected_accuracy"] for u in us])))
            for d, us in grouped.items()}


def _header(columns: list[tuple[str, str]]) -> list[str]:
    return ["defense", *[f"{QUERY_STRATEGIES[q].label} {RECOVERY_STRATEGIES[s].label}" for q, s in columns],
            "max acc.", "max fidelity", "max L1", "protected acc."]


def grid_table(grid: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The paper's table: a row per defense; extraction accuracy per cell (the mean over seeds), then the
    summary columns: max accuracy and max fidelity over attacks (of the means), the largest L1 distortion
    and the protected accuracy."""
    summary, utilities = grid_intervals(grid), _utility_by_defense(grid)
    rows = []
    for key, mine in summary["defenses"].items():
        rows.append([DEFENSES[key].label, *[mine["accuracy"][col].mean for col in summary["columns"]],
                     mine["max_accuracy"][1].mean, mine["max_fidelity"][1].mean, *utilities[key]])
    return _header(summary["columns"]), rows


def grid_interval_table(grid: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """grid_table with every accuracy, and the max accuracy and max fidelity, as "mean [low, high]" (95%
    intervals, see stats.py; the max columns give the interval of the cell with the largest mean)."""
    summary, utilities = grid_intervals(grid), _utility_by_defense(grid)
    rows = []
    for key, mine in summary["defenses"].items():
        rows.append([DEFENSES[key].label, *[mine["accuracy"][col].format() for col in summary["columns"]],
                     mine["max_accuracy"][1].format(), mine["max_fidelity"][1].format(), *utilities[key]])
    return _header(summary["columns"]), rows


def intervals_record(grid: dict[str, Any]) -> dict[str, Any]:
    """grid_intervals for the JSON record: every cell's and every worst case's mean, interval and per-seed
    values, and the method used (stats.interval_method)."""
    summary = grid_intervals(grid)
    cells, worst = [], []
    for defense, mine in summary["defenses"].items():
        for (query, strategy), iv in mine["accuracy"].items():
            cells.append({"defense": defense, "query": query, "strategy": strategy, "accuracy": iv.as_dict(),
                          "fidelity": mine["fidelity"][query, strategy].as_dict()})
        for name in ("max_accuracy", "max_fidelity"):
            (query, strategy), iv = mine[name]
            worst.append({"defense": defense, "of": name, "query": query, "strategy": strategy, **iv.as_dict()})
    return {"method": interval_method(grid["cells"]), "level": LEVEL, "cells": cells, "worst_case": worst}


def markdown(header: list[str], rows: list[list[Any]], float_format: str = ".4f") -> str:
    """A Markdown table; floats as `float_format` (e.g. ".3g" for timings), None as "-"."""
    def fmt(v):
        if v is None:
            return "-"
        return format(v, float_format) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(folder: Path, name: str, header: list[str], rows: list[list[Any]], record: dict[str, Any] | None,
                  float_format: str = ".4f") -> None:
    """<name>.md, <name>.csv and <name>.json (the rows plus `record`: configuration, versions, timings; no JSON
    when `record` is None)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(header, rows, float_format) + "\n"
    write_atomically(folder / f"{name}.md", lambda f: f.write(text.encode()))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(folder / f"{name}.csv", lambda f: f.write(buffer.getvalue().encode()))
    if record is None:
        return
    payload = json.dumps({**record, "header": header, "rows": rows}, indent=1, default=str)
    write_atomically(folder / f"{name}.json", lambda f: f.write(payload.encode()))


def versions() -> dict[str, Any]:
    """What the results depend on besides the configuration, for the JSON records."""
    return {"modelguard_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "cuda_built": cuda_built()}
