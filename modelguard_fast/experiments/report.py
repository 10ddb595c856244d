"""Tables of experiment results: Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..persistence.atomic import write_atomically
from .setup import DEFENSE_NAMES

STRATEGY_NAMES = {"naive": "Naive", "top1": "Top-1", "s4l": "S4L", "smoothing": "Smoothing", "ddae": "D-DAE",
                  "ddae+": "D-DAE+", "pbayes": "pBayes"}
QUERY_NAMES = {"knockoff": "KnockoffNets", "jbda": "JBDA-TR"}


def grid_table(grid: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The paper's table: a row per defense; extraction accuracy per cell, then the summary columns."""
    cells = grid["cells"]
    columns = list(dict.fromkeys((c["query"], c["strategy"]) for c in cells))
    header = ["defense", *[f"{QUERY_NAMES[q]} {STRATEGY_NAMES[s]}" for q, s in columns],
              "max acc.", "max fidelity", "max L1", "protected acc."]
    rows = []
    for key in dict.fromkeys(c["defense"] for c in cells):
        mine = {(c["query"], c["strategy"]): c for c in cells if c["defense"] == key}
        u = grid["utility"][key]
        rows.append([DEFENSE_NAMES[key], *[mine[col]["accuracy"] for col in columns],
                     max(c["accuracy"] for c in mine.values()), max(c["fidelity"] for c in mine.values()),
                     u["max_l1"], u["protected_accuracy"]])
    return header, rows


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v):
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(folder: Path, name: str, header: list[str], rows: list[list[Any]], record: dict[str, Any]) -> None:
    """<name>.md, <name>.csv and <name>.json (the rows plus `record`: configuration, versions, timings)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(header, rows) + "\n"
    write_atomically(folder / f"{name}.md", lambda f: f.write(text.encode()))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(folder / f"{name}.csv", lambda f: f.write(buffer.getvalue().encode()))
    payload = json.dumps({**record, "header": header, "rows": rows}, indent=1, default=str)
    write_atomically(folder / f"{name}.json", lambda f: f.write(payload.encode()))
