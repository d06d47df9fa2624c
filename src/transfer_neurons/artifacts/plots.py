"""Figures (PNG) from analysis results; no computation here. Layers are 0-based, as in the files."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from transfer_neurons.artifacts.io import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def layer_curves(curves: dict[str, list[float]], title: str, ylabel: str, path: str | Path) -> None:
    """One line per label over the layers."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=label)
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def pca_panels(points: list[dict[str, np.ndarray]], path: str | Path, title: str = "PCA of sentence states") -> None:
    """One scatter panel per layer, languages coloured; `points[l][lang]` is [n, 2]."""
    cols = min(6, len(points))
    rows = math.ceil(len(points) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for layer, ax in enumerate(axes.flat):
        if layer >= len(points):
            ax.axis("off")
            continue
        for lang, xy in points[layer].items():
            ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, label=lang)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", markerscale=3)
    fig.suptitle(title, y=1.02)
    _save(fig, path)


def heatmaps(matrices: list[np.ndarray], labels: list[str], path: str | Path, title: str) -> None:
    """One annotated heatmap per layer (e.g. centroid cosine similarity between languages)."""
    cols = min(6, len(matrices))
    rows = math.ceil(len(matrices) / cols)
    size = 0.45 * len(labels) + 1.2
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for layer, ax in enumerate(axes.flat):
        if layer >= len(matrices):
            ax.axis("off")
            continue
        ax.imshow(matrices[layer], vmin=-1, vmax=1, cmap="coolwarm")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"layer {layer}", fontsize=9)
    fig.suptitle(title)
    _save(fig, path)


def grouped_bars(
    values: dict[str, dict[str, float]], title: str, ylabel: str, path: str | Path, ylim: tuple | None = None
) -> None:
    """Bars grouped by the outer key, one colour per inner key (e.g. condition -> metric)."""
    groups = list(values)
    series = list(dict.fromkeys(name for inner in values.values() for name in inner))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(min(22, max(5, 1.2 * len(groups) * max(1, len(series) / 2))), 4))
    x = np.arange(len(groups))
    for k, name in enumerate(series):
        heights = [values[g].get(name, np.nan) for g in groups]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def layer_histograms(
    counts: dict[str, list[int]], path: str | Path, title: str = "Layers of the top-n neurons"
) -> None:
    """One bar panel per neuron set: how many of its top-n neurons sit in each layer."""
    cols = min(4, len(counts))
    rows = math.ceil(len(counts) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, (label, values) in zip(axes.flat, counts.items(), strict=False):
        ax.bar(range(len(values)), values, color="tab:blue")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
    for ax in list(axes.flat)[len(counts) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def annotated_heatmap(matrix: np.ndarray, labels: list[str], title: str, path: str | Path) -> None:
    """One heatmap in [0, 1] with the value written in each cell (e.g. Jaccard overlap)."""
    size = 0.7 * len(labels) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] < 0.6 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title)
    _save(fig, path)


def dose_response(
    factors: list[float], curves: dict[str, list[float]], normal: float, lang: str, path: str | Path
) -> None:
    """Share of outputs in `lang` against the scaling factor, one line per neuron set, normal dashed."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, shares in curves.items():
        ax.plot(factors, shares, marker="o", label=label)
    ax.axhline(normal, color="grey", linestyle="--", label="normal")
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xticks(factors, [f"{f:g}" for f in factors], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("factor")
    ax.set_ylabel(f"share of outputs in {lang}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Steering sweep: {lang} continuations under scaled neurons")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
