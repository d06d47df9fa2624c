"""Figures of a comparison of models: curves over relative depth (layer / L), so that models of
different depth share one axis; one panel per language or neuron type, one colour per model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.artifacts.plots import floats, plt, save_figure, titled


@dataclass
class Line:
    """One model's values at the relative depths `depth`, with an optional 95% band (low, high);
    a thin line is drawn faintly beside the model's main one (e.g. one language of a mean)."""

    depth: list[float]
    values: list[float]
    band: tuple[list[float | None], list[float | None]] | None = None
    thin: bool = False


def depth_panels(panels: dict[str, dict[str, list[Line]]], title: str, ylabel: str, path: Path, note: str) -> None:
    """One panel per key of `panels` (e.g. a language), in it each model's lines in its own colour
    (the same in every panel), shaded where a line has a band; the legend names the models."""
    models = list(dict.fromkeys(model for lines in panels.values() for model in lines))
    colours = {model: f"C{number % 10}" for number, model in enumerate(models)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.6 * cols + 1.2, 3.4 * rows + 0.6), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, (panel, lines) in zip(axes.flat, panels.items(), strict=False):
        for model, model_lines in lines.items():
            for line in model_lines:
                width, alpha = (0.8, 0.35) if line.thin else (1.8, 1.0)
                ax.plot(line.depth, line.values, color=colours[model], linewidth=width, alpha=alpha, marker=".")
                if line.band is not None:
                    low, high = (floats(side) for side in line.band)
                    ax.fill_between(line.depth, low, high, color=colours[model], alpha=0.15, linewidth=0)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("relative depth (layer / L)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[model], linewidth=1.8) for model in models]
    fig.legend(handles, models, loc="outside right upper", fontsize=8)
    fig.suptitle(titled(title, note))
    save_figure(fig, path)
