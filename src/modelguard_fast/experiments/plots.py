"""Figures of the experiments: each takes a table's (header, rows) and writes a PNG atomically.

Drawn with matplotlib's object-oriented API on the Agg canvas, without pyplot,
so the caller's matplotlib backend is neither needed nor changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..persistence.atomic import write_atomically
from ..defenses.registry import DEFENSES

REFERENCE_LINES = ("None", "Top-1")  # rows of the OOD table drawn as horizontal lines


def _figure(width: float = 6.4, height: float = 4.0, panels: int = 1, **grid: Any):
    """A figure on the Agg canvas and its `panels` axes (one axes object when panels == 1)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, **grid)
    return figure, axes


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


def plot_grid(header: list[str], rows: list[list[Any]], path: str | os.PathLike, title: str | None = None,
              spread: list[tuple[float | None, float | None, tuple[float, ...]]] | None = None) -> Path:
    """The main table: a heat map of extraction accuracy per attack (means over seeds), and per defense its
    worst case (the attack of the largest mean) as a bar labelled with its largest L1 distortion. Rows as
    report.grid_table returns them. `spread`, per row: the worst case's 95% interval (low, high), drawn as an
    error bar, and its per-seed values, drawn as dots."""
    import numpy as np

    attacks = [a.replace("KnockoffNets ", "").replace("JBDA-TR ", "") + ("\nKnockoff" if a.startswith("Knockoff")
                                                                         else "\nJBDA-TR") for a in header[1:-4]]
    names = [row[0] for row in rows]
    accuracy = np.array([row[1:-4] for row in rows], dtype=float)
    figure, (left, right) = _figure(15, 4.8, panels=2, gridspec_kw={"width_ratios": [2.6, 1]})
    image = left.imshow(accuracy, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(len(attacks)), attacks, fontsize=7)
    left.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(accuracy):
        left.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                  color="black" if value > 0.6 else "white")
    figure.colorbar(image, ax=left, label="extraction accuracy")
    left.set_title("Extraction accuracy per attack")
    worst = [row[-4] for row in rows]
    bars = right.barh(range(len(names)), worst, color="tab:blue", alpha=0.6 if spread else 1.0)
    if spread:
        for i, (low, high, values) in enumerate(spread):
            if low is not None:
                right.errorbar(worst[i], i, xerr=[[worst[i] - low], [high - worst[i]]], color="black", capsize=3)
            right.scatter(values, [i] * len(values), color="black", s=8, zorder=3)
    right.bar_label(bars, [f"{w:.3f} (L1 <= {row[-2]:.2f})" for w, row in zip(worst, rows)], fontsize=7,
                    padding=2)
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    right.set_xlim(0, 1.45)
    right.set_xlabel("max extraction accuracy over attacks" + (" (mean, 95% interval, seeds)" if spread else ""))
    right.set_title("Worst case (and largest L1)")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_sweep(header: list[str], rows: list[list[Any]], strategies: list[str], path: str | os.PathLike,
               title: str | None = None) -> Path:
    """Figure 3: extraction accuracy against the L1 budget, a panel per attack strategy and a curve per defense;
    the undefended target as a dashed line. Rows as sweep.sweep_table returns them."""
    column = {name: i for i, name in enumerate(header)}
    figure, axes = _figure(5.5 * len(strategies), 4, panels=len(strategies), squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        acc = column[f"{strategy} acc."]
        for name in dict.fromkeys(row[0] for row in rows):
            mine = [row for row in rows if row[0] == name]
            if name == DEFENSES["none"].label:
                ax.axhline(mine[0][acc], color="gray", linestyle="--", label=name)
            else:
                ax.plot([row[1] for row in mine], [row[acc] for row in mine], marker="o", label=name)
        ax.set_xlabel("L1 budget eps")
        ax.set_ylabel("extraction accuracy")
        ax.set_title(f"KnockoffNets + {strategy}")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_centroids(header: list[str], rows: list[list[Any]], path: str | os.PathLike, strategy: str = "pbayes",
                   title: str | None = None) -> Path:
    """Figure 4: the attack's accuracy and recovery distance against ModelGuard-S's number of centroids (one
    point per eps of the sweep). Rows as sweep.sweep_table returns them."""
    column = {name: i for i, name in enumerate(header)}
    mine = sorted((row for row in rows if row[0] == DEFENSES["mgs"].label), key=lambda row: row[column["centroids"]])
    centroids = [row[column["centroids"]] for row in mine]
    accuracy = [row[column[f"{strategy} acc."]] for row in mine]
    figure, axes = _figure()
    axes.plot(centroids, accuracy, marker="o", color="tab:blue")
    axes.set_xlabel("ModelGuard-S centroids (all classes)")
    axes.set_ylabel("extraction accuracy", color="tab:blue")
    twin = axes.twinx()
    twin.plot(centroids, [row[column[f"{strategy} recovery dist."]] for row in mine], marker="s", color="tab:red")
    twin.set_ylabel("mean recovery distance", color="tab:red")
    for row, x, y in zip(mine, centroids, accuracy):
        axes.annotate(f"eps {row[1]:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.set_xscale("log")
    axes.grid(alpha=0.3)
    axes.set_title(title or f"KnockoffNets + {strategy} against ModelGuard-S")
    return _save(figure, path)
