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


def markdown(header: list[str], rows: list[list[Any]], float_format: str = ".4f") -> str:
    """A Markdown table; floats as `float_format` (e.g. ".3g" for timings), None as "-"."""
    def fmt(v):
        if v is None:
            return "-"
        return format(v, float_format) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(folder: Path, name: str, header: list[str], rows: list[list[Any]], record: dict[str, Any],
                  float_format: str = ".4f") -> None:
    """<name>.md, <name>.csv and <name>.json (the rows plus `record`: configuration, versions, timings)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(header, rows, float_format) + "\n"
    write_atomically(folder / f"{name}.md", lambda f: f.write(text.encode()))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(folder / f"{name}.csv", lambda f: f.write(buffer.getvalue().encode()))
    payload = json.dumps({**record, "header": header, "rows": rows}, indent=1, default=str)
    write_atomically(folder / f"{name}.json", lambda f: f.write(payload.encode()))


def versions() -> dict[str, Any]:
    """What the results depend on besides the configuration, for the JSON records."""
    return {"modelguard_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "cuda_built": cuda_built()}
