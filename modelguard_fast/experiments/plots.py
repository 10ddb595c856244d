"""PNG figures of the experiments (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from ..persistence.atomic import write_atomically  # noqa: E402
from .setup import DEFENSE_NAMES  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_atomically(Path(path), lambda f: f.write(buffer.getvalue()))


def plot_grid(header: list[str], rows: list[list[Any]], path: str | Path, title: str = "") -> None:
    """The main table as a heat map of extraction accuracy, next to each defense's worst case against its
    largest L1 distortion."""
    attacks = header[1:-4]
    names = [row[0] for row in rows]
    accuracy = np.array([row[1:-4] for row in rows], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    image = left.imshow(accuracy, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(len(attacks)), [a.replace(" ", "\n", 1) for a in attacks], fontsize=7)
    left.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(accuracy):
        left.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                  color="black" if value > 0.6 else "white")
    fig.colorbar(image, ax=left, label="extraction accuracy")
    left.set_title("Extraction accuracy per attack")
    for row in rows:
        right.scatter(row[-2], row[-4], s=40)
        right.annotate(row[0], (row[-2], row[-4]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    right.set_xlabel("largest L1 distortion on the test set")
    right.set_ylabel("worst case: max extraction accuracy over attacks")
    right.set_ylim(0, 1.05)
    right.grid(alpha=0.3)
    right.set_title("Privacy against utility")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_sweep(header: list[str], rows: list[list[Any]], strategies: list[str], path: str | Path,
               title: str = "") -> None:
    """Figure 3: extraction accuracy against the L1 budget, one panel per attack strategy."""
    column = {name: i for i, name in enumerate(header)}
    fig, axes = plt.subplots(1, len(strategies), figsize=(5.5 * len(strategies), 4), squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        acc = column[f"{strategy} acc."]
        for name in dict.fromkeys(row[0] for row in rows):
            mine = [row for row in rows if row[0] == name]
            if name == DEFENSE_NAMES["none"]:
                ax.axhline(mine[0][acc], color="gray", linestyle="--", label=name)
            else:
                ax.plot([row[1] for row in mine], [row[acc] for row in mine], marker="o", label=name)
        ax.set_xlabel("L1 budget eps")
        ax.set_ylabel("extraction accuracy")
        ax.set_title(f"KnockoffNets + {strategy}")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_centroids(header: list[str], rows: list[list[Any]], path: str | Path, strategy: str = "pbayes",
                   title: str = "") -> None:
    """Figure 4: the attack's accuracy and recovery distance against ModelGuard-S's number of centroids."""
    column = {name: i for i, name in enumerate(header)}
    mine = sorted((row for row in rows if row[0] == DEFENSE_NAMES["mgs"]), key=lambda row: row[column["centroids"]])
    centroids = [row[column["centroids"]] for row in mine]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(centroids, [row[column[f"{strategy} acc."]] for row in mine], marker="o", color="tab:blue")
    ax.set_xlabel("ModelGuard-S centroids (over all classes)")
    ax.set_ylabel("extraction accuracy", color="tab:blue")
    twin = ax.twinx()
    twin.plot(centroids, [row[column[f"{strategy} recovery dist."]] for row in mine], marker="s", color="tab:red")
    twin.set_ylabel("mean recovery distance", color="tab:red")
    for row in mine:
        ax.annotate(f"eps {row[1]:g}", (row[column["centroids"]], row[column[f"{strategy} acc."]]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"KnockoffNets + {strategy} against ModelGuard-S")
    save_figure(fig, path)
