"""Figure functions: each writes a PNG; the uncertainty (bands, error bars) and panels are really drawn."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer

from transfer_neurons.artifacts import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures the functions save, kept open for inspection (the file is still written)."""
    saved = []

    def keep(fig, path):
        saved.append(fig)
        fig.savefig(path, format="png", dpi=60)

    monkeypatch.setattr(plots, "save_figure", keep)
    yield saved
    for fig in saved:
        plots.plt.close(fig)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG)
    assert len(data) > 2_000  # a drawn figure (these are 3-6 kB, by matplotlib version); a blank one is under 1 kB


@pytest.mark.parametrize(
    ("num_layers", "count", "expected"),
    [
        (18, 4, [0, 6, 11, 17]),
        (3, 4, [0, 1, 2]),
        (1, 4, [0]),
        (4, 4, [0, 1, 2, 3]),
        (28, 4, [0, 9, 18, 27]),
        (10, 2, [0, 9]),
        (0, 4, []),
    ],
)
def test_chosen_layers(num_layers, count, expected):
    assert plots.chosen_layers(num_layers, count) == expected


def test_chosen_layers_default_count_and_spread():
    assert plots.chosen_layers(1) == [0]
    for num_layers in range(5, 60):
        layers = plots.chosen_layers(num_layers)
        assert layers[0] == 0 and layers[-1] == num_layers - 1
        assert layers == sorted(set(layers)) and len(layers) == 4


def test_layer_curves_bands_with_none(tmp_path, figures):
    curves = {"ja": [0.1, 0.2, 0.3, 0.4], "ko": [0.2, 0.3, 0.4, 0.5], "it": [0.5, 0.4, 0.3, 0.2]}
    bands = {"ja": ([0.0, None, 0.2, 0.3], [0.2, 0.3, None, 0.5]), "ko": ([0.1, 0.2, 0.3, 0.4], [0.3] * 4)}
    path = tmp_path / "curves.png"
    plots.layer_curves(curves, "Similarity", "cosine", path, bands=bands, n_label="n = 25 pairs")
    assert_png(path)
    (fig,) = figures
    (ax,) = fig.axes
    fills = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(fills) == 2  # "it" has no band
    lines = {line.get_label(): line.get_color() for line in ax.get_lines()}
    colours = {tuple(np.round(fill.get_facecolor()[0][:3], 3)) for fill in fills}
    assert colours == {tuple(np.round(to_rgb(lines[label]), 3)) for label in ("ja", "ko")}
    assert all(fill.get_alpha() == pytest.approx(0.2) for fill in fills)
    assert "n = 25 pairs" in ax.get_title()


def test_layer_curves_unchanged_without_new_arguments(tmp_path, figures):
    path = tmp_path / "plain.png"
    plots.layer_curves({"a": [1.0, 2.0, 3.0]}, "Plain", "y", path)
    assert_png(path)
    (ax,) = figures[0].axes
    assert not ax.collections
    assert ax.get_title() == "Plain"


def test_grouped_bars_error_bars(tmp_path, figures):
    groups = [f"condition {i}" for i in range(7)]
    values = {g: {"ja": 0.25 + 0.1 * i, "en": 0.5, "other": 0.1} for i, g in enumerate(groups)}
    errors = {g: {"ja": (v["ja"] - 0.05, v["ja"] + 0.05), "en": (0.45, 0.6)} for g, v in values.items()}
    errors[groups[0]] = {"ja": (0.1, 0.3)}  # missing entries: no error bar
    path = tmp_path / "bars.png"
    plots.grouped_bars(values, "Output language", "share", path, (0, 1), errors=errors, n_label="n = 200 prompts")
    assert_png(path)
    (fig,) = figures
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 + 2 * 6
    first = next(b for b in bars if b.lines[2])  # the vertical segment of one error bar
    segment = first.lines[2][0].get_segments()[0]
    assert sorted(np.round(segment[:, 1], 6)) == [0.1, 0.3]
    assert all(b.lines[2][0].get_color()[0][:3].tolist() == [0.0, 0.0, 0.0] for b in bars)
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("0.50") == 7 and texts.count("0.10") == 7  # values still written on every bar
    assert "n = 200 prompts" in ax.get_title()
    assert all(label.get_rotation() > 0 for label in ax.get_xticklabels())  # 7 groups: rotated
    assert fig.get_figwidth() <= 22


def test_grouped_bars_without_errors(tmp_path, figures):
    path = tmp_path / "plain_bars.png"
    plots.grouped_bars({"a": {"x": 0.3, "y": 0.5}, "b": {"x": 0.7}}, "Plain", "share", path, (0, 1))
    assert_png(path)
    ax = figures[0].axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert sorted(t.get_text() for t in ax.texts if t.get_text()) == ["0.30", "0.50", "0.70"]
    assert all(label.get_rotation() == 0 for label in ax.get_xticklabels())


def test_heatmaps_chosen_layers(tmp_path, figures):
    labels = ["en", "ja", "ko"]
    matrices = [np.full((3, 3), value) for value in (0.1, -0.9, 0.5)]
    path = tmp_path / "heatmaps.png"
    plots.heatmaps(matrices, labels, path, "Cosine", layers=[0, 2])
    assert_png(path)
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["layer 0", "layer 2"]
    assert {t.get_text() for t in panels[1].texts} == {"0.50"} and len(panels[1].texts) == 9
    assert len(fig.axes) == 3  # two panels and one shared colorbar
    assert fig.get_figwidth() >= 2 * 3.6


def test_heatmaps_all_layers_unchanged(tmp_path, figures):
    path = tmp_path / "all.png"
    plots.heatmaps([np.eye(3)] * 3, ["en", "ja", "ko"], path, "Cosine")
    assert_png(path)
    panels = [ax for ax in figures[0].axes if ax.images]
    assert len(panels) == 3 and not any(ax.texts for ax in panels)


def test_jaccard_by_type(tmp_path, figures):
    labels = ["t1 ja", "t2 ja", "t1 ko", "t2 ko", "random"]
    types = ["type-1", "type-2", "type-1", "type-2", None]
    matrix = np.array(
        [
            [1.0, 0.0, 0.4, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.7, 0.0],
            [0.4, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.7, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    path = tmp_path / "jaccard.png"
    plots.jaccard_by_type(matrix, labels, types, "Jaccard", path)
    assert_png(path)
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["type-1", "type-2", "other"]
    assert [[t.get_text() for t in ax.get_yticklabels()] for ax in panels] == [
        ["t1 ja", "t1 ko"],
        ["t2 ja", "t2 ko"],
        ["random"],
    ]
    assert sorted(t.get_text() for t in panels[1].texts) == ["0.70", "0.70", "1.00", "1.00"]
    np.testing.assert_allclose(panels[0].images[0].get_array(), [[1.0, 0.4], [0.4, 1.0]])
    assert panels[0].images[0].get_clim() == (0, 1)


def test_annotated_heatmap_still_annotates(tmp_path, figures):
    path = tmp_path / "annotated.png"
    plots.annotated_heatmap(np.array([[1.0, 0.25], [0.25, 1.0]]), ["a", "b"], "Jaccard", path)
    assert_png(path)
    texts = figures[0].axes[0].texts
    assert [t.get_text() for t in texts] == ["1.00", "0.25", "0.25", "1.00"]
    assert [t.get_color() for t in texts] == ["black", "white", "white", "black"]


def test_real_save_writes_png(tmp_path):
    """Without the fixture: the module's own saving path (atomic rename) gives a PNG."""
    path = tmp_path / "sub" / "jaccard.png"
    plots.jaccard_by_type(np.eye(3), ["a", "b", "c"], ["x", "y", None], "Jaccard", path)
    assert_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["jaccard.png"]
