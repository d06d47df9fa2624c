"""Figures (PNG) from analysis results; no computation here. Layers are 0-based, as in the files."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from transfer_neurons.artifacts.io import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def titled(title: str, n_label: str | None) -> str:
    """The title, with the number of units it rests on as a second line."""
    return f"{title}\n({n_label})" if n_label else title


def floats(values: Sequence[float | None]) -> np.ndarray:
    """Values as floats, None as NaN (matplotlib leaves NaN out)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _annotate_cells(ax: Axes, matrix: np.ndarray, fontsize: float, dark: Callable[[float], bool]) -> None:
    """Write each cell's value (2 decimals) in it, white where `dark(value)` says the colour is dark."""
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = float(matrix[i, j])
            if math.isnan(value):
                continue
            color = "white" if dark(value) else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=fontsize, color=color)


def chosen_layers(num_layers: int, count: int = 4) -> list[int]:
    """`count` layers spread evenly from the first to the last (all of them when there are fewer)."""
    if num_layers <= 0 or count <= 0:
        return []
    if num_layers <= count:
        return list(range(num_layers))
    return sorted({int(round(x)) for x in np.linspace(0, num_layers - 1, count)})


def layer_curves(
    curves: dict[str, list[float]],
    title: str,
    ylabel: str,
    path: str | Path,
    bands: dict[str, tuple[Sequence[float | None], Sequence[float | None]]] | None = None,
    n_label: str | None = None,
) -> None:
    """One line per label over the layers; `bands[label] = (low, high)` shades its 95 % CI."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        (line,) = ax.plot(range(len(values)), values, marker="o", markersize=3, label=label)
        if bands and label in bands:
            low, high = (floats(side) for side in bands[label])
            size = min(len(low), len(high))
            ax.fill_between(range(size), low[:size], high[:size], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(titled(title, n_label))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


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
    save_figure(fig, path)


def heatmaps(
    matrices: list[np.ndarray], labels: list[str], path: str | Path, title: str, layers: list[int] | None = None
) -> None:
    """One heatmap per layer (e.g. centroid cosine similarity between languages); with `layers`, only
    those layers, larger, with the value written in each cell."""
    if layers is not None:
        _layer_heatmaps(matrices, labels, path, title, layers)
        return
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
    save_figure(fig, path)


def _layer_heatmaps(
    matrices: list[np.ndarray], labels: list[str], path: str | Path, title: str, layers: list[int]
) -> None:
    """The chosen layers' matrices in [-1, 1], annotated, two per row (readable at page width), one shared colorbar."""
    cols = max(1, min(2, len(layers)))
    rows = max(1, math.ceil(len(layers) / cols))
    size = max(3.6, 0.42 * len(labels) + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.8, size * rows), squeeze=False, layout="constrained")
    image = None
    for ax, layer in zip(axes.flat, layers, strict=False):
        matrix = np.asarray(matrices[layer], dtype=float)
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
        _annotate_cells(ax, matrix, 8, lambda v: abs(v) > 0.6)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"layer {layer}", fontsize=10)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
    save_figure(fig, path)


def grouped_bars(
    values: dict[str, dict[str, float]],
    title: str,
    ylabel: str,
    path: str | Path,
    ylim: tuple | None = None,
    errors: dict[str, dict[str, tuple[float, float]]] | None = None,
    n_label: str | None = None,
) -> None:
    """Bars grouped by the outer key, one colour per inner key (e.g. condition -> metric);
    `errors[group][series] = (low, high)` draws that bar's 95 % CI as an error bar."""
    groups = list(values)
    series = list(dict.fromkeys(name for inner in values.values() for name in inner))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(min(22, max(5, 1.2 * len(groups) * max(1, len(series) / 2))), 4))
    x = np.arange(len(groups))
    for k, name in enumerate(series):
        heights = [values[g].get(name, np.nan) for g in groups]
        positions = x + (k - (len(series) - 1) / 2) * width
        bars = ax.bar(positions, heights, width, label=name)
        spans = [_span(heights[i], (errors or {}).get(g, {}).get(name)) for i, g in enumerate(groups)]
        plain = ["" if s is not None or math.isnan(h) else f"{h:.2f}" for h, s in zip(heights, spans, strict=True)]
        ax.bar_label(bars, labels=plain, fontsize=7)  # bars with an error bar are labelled above it
        for position, height, span in zip(positions, heights, spans, strict=True):
            if span is None:
                continue
            below, above = span
            ax.errorbar(position, height, yerr=[[below], [above]], fmt="none", ecolor="black", capsize=3, lw=0.8)
            ax.annotate(
                f"{height:.2f}",
                (position, height + above),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    crowded = len(groups) > 6
    ax.set_xticks(x, groups, fontsize=8, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(titled(title, n_label))
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save_figure(fig, path)


def _span(height: float, interval: tuple[float, float] | None) -> tuple[float, float] | None:
    """The error bar's extent below and above the bar's top, or None where there is none to draw."""
    if interval is None or math.isnan(height) or any(v is None or math.isnan(v) for v in interval):
        return None
    low, high = interval
    return max(0.0, height - low), max(0.0, high - height)


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
    save_figure(fig, path)


def annotated_heatmap(matrix: np.ndarray, labels: list[str], title: str, path: str | Path) -> None:
    """One heatmap in [0, 1] with the value written in each cell (e.g. Jaccard overlap)."""
    size = 0.7 * len(labels) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    _annotate_cells(ax, np.asarray(matrix, dtype=float), 7, lambda v: v < 0.6)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title)
    save_figure(fig, path)


def jaccard_by_type(
    matrix: np.ndarray, labels: list[str], types: list[str | None], title: str, path: str | Path
) -> None:
    """One annotated heatmap in [0, 1] per type, over the labels of that type (in order), side by side;
    labels without a type go into one panel "other"."""
    groups: dict[str, list[int]] = {}
    for index, neuron_type in enumerate(types):
        if neuron_type is not None:
            groups.setdefault(neuron_type, []).append(index)
    if None in types:
        groups["other"] = [index for index, neuron_type in enumerate(types) if neuron_type is None]
    sizes = [len(indices) for indices in groups.values()] or [1]
    cell = 0.6
    fig, axes = plt.subplots(
        1,
        len(sizes),
        squeeze=False,
        width_ratios=sizes,
        layout="constrained",
        figsize=(cell * sum(sizes) + 1.6 * len(sizes) + 1, cell * max(sizes) + 2),
    )
    image = None
    for ax, (neuron_type, indices) in zip(axes.flat, groups.items(), strict=False):
        sub = np.asarray(matrix, dtype=float)[np.ix_(indices, indices)]
        names = [labels[i] for i in indices]
        image = ax.imshow(sub, vmin=0, vmax=1, cmap="viridis")
        _annotate_cells(ax, sub, 7, lambda v: v < 0.6)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(neuron_type, fontsize=10)
    if image is None:
        axes.flat[0].axis("off")
    else:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle(title)
    save_figure(fig, path)


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
    save_figure(fig, path)


def steer_curves(
    curves: dict[str, dict[str, list[tuple[float, Any]]]], normal: dict[str, Any], target: str, path: str | Path
) -> None:
    """Target share and log-likelihood against alpha, one line per set (random sets dashed), each with
    its 95 % band; the unsteered model as a grey line. `curves[label][metric]`: (alpha, Estimate)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, ylabel in zip(
        axes, ("target", "loglik"), (f"share of outputs in {target}", "mean log-likelihood (unsteered)"), strict=True
    ):
        for label, values in curves.items():
            points = sorted(values[metric], key=lambda p: p[0])
            alphas = [a for a, _ in points]
            line = ax.plot(
                alphas,
                [e.value for _, e in points],
                marker="o",
                label=label,
                linestyle="--" if label.endswith("random") else "-",
            )[0]
            if all(e.ci is not None for _, e in points):
                ax.fill_between(
                    alphas,
                    [e.ci[0] for _, e in points],
                    [e.ci[1] for _, e in points],
                    color=line.get_color(),
                    alpha=0.15,
                )
        ax.axhline(normal[metric].value, color="grey", linestyle=":", label="normal")
        ax.set_xlabel("alpha")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Steering toward {target} (dev prompts)")
    save_figure(fig, path)
