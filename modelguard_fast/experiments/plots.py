"""Figures of the studies (studies.py): each takes a study's (header, rows) and writes a PNG atomically.

Drawn with matplotlib's object-oriented API on the Agg canvas, without pyplot,
so the caller's matplotlib backend is neither needed nor changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..persistence.atomic import write_atomically

REFERENCE_LINES = ("None", "Top-1")  # rows of the OOD table drawn as horizontal lines


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: figure.savefig(f, format="png", dpi=150))
    return path


def _eps_columns(header: list[str]) -> list[float]:
    """The eps of each column after the first, from headers "eps=<value>"."""
    try:
        return [float(h.split("=", 1)[1]) for h in header[1:]]
    except (IndexError, ValueError):
        raise ValueError(f"expected columns named 'eps=<value>' after the first, got {header}") from None


def plot_response_times(header: list[str], rows: list[list[Any]], path: str | os.PathLike,
                        title: str | None = None) -> Path:
    """Figure 6: per defense, a group of bars (log scale): for each batch size the total seconds per
    query (solid) and the defense's part alone (hatched). Rows as studies.response_times returns them."""
    defenses = list(dict.fromkeys(row[0] for row in rows))
    batches = list(dict.fromkeys(row[1] for row in rows))
    values = {(row[0], row[1]): (row[2], row[4]) for row in rows}  # total, defense only
    smallest = min(v for pair in values.values() for v in pair if v > 0)
    figure, axes = _figure(max(6.4, 0.9 * len(defenses) * len(batches)), 4.2)
    width = 0.8 / (2 * len(batches))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for j, batch in enumerate(batches):
        color = colors[j % len(colors)]
        for k, (part, style) in enumerate((("total", {}), ("defense only", {"hatch": "//", "alpha": 0.5}))):
            offset = (2 * j + k + 0.5) * width - 0.4
            heights = [max(values[d, batch][k], smallest / 10) for d in defenses]
            axes.bar([i + offset for i in range(len(defenses))], heights, width, color=color,
                     label=f"batch {batch}, {part}", **style)
    axes.set_yscale("log")
    axes.set_xticks(range(len(defenses)), defenses, rotation=30, ha="right")
    axes.set_ylabel("seconds per query (median)")
    axes.set_title(title or "Response time of each defense")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_ood_auroc(header: list[str], rows: list[list[Any]], path: str | os.PathLike,
                   title: str | None = None) -> Path:
    """Figure 5, left: AUROC against eps, a curve per defense; None and Top-1 as reference lines.
    Rows as studies.ood_auroc returns them."""
    eps = _eps_columns(header)
    figure, axes = _figure()
    for row in rows:
        if row[0] in REFERENCE_LINES:
            axes.axhline(row[1], linestyle="--" if row[0] == "None" else ":", color="grey" if row[0] == "None"
                         else "black", label=row[0])
        else:
            axes.plot(eps, row[1:], marker="o", label=row[0])
    axes.set_xlabel("L1 distortion budget eps")
    axes.set_ylabel("AUROC of max probability")
    axes.set_ylim(min(0.45, *(v for row in rows for v in row[1:])) - 0.02, 1.02)
    axes.set_title(title or "OOD detection on defended answers")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_centroid_growth(header: list[str], rows: list[list[Any]], path: str | os.PathLike,
                         title: str | None = None) -> Path:
    """Figure 5, right: ModelGuard-S centroids against queries answered, a curve per eps.
    Rows as studies.centroid_growth returns them."""
    eps = _eps_columns(header)
    queries = [0, *(row[0] for row in rows)]
    figure, axes = _figure()
    for j, value in enumerate(eps):
        axes.plot(queries, [0, *(row[1 + j] for row in rows)], label=f"eps = {value:g}")
    axes.set_xlabel("queries answered")
    axes.set_ylabel("centroids")
    axes.set_title(title or "ModelGuard-S centroids along the attacker's queries")
    axes.legend(fontsize="small")
    return _save(figure, path)
