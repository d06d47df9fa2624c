"""Overlap of neuron sets (docs/method.md section 6): pairwise Jaccard of their top-n against the chance level
of random sets, each drawn over its own set's candidate layers, and where in the model each top-n
sits. No model is needed: the sets and the model's shape suffice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from transfer_neurons.analyses.base import Config
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_tensors, write_json
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.errors import InputError
from transfer_neurons.metrics import overlap as ov


class OverlapConfig(Config):
    """Settings of one overlap analysis."""

    top_n: int | None = Field(
        None, ge=1, description="Compare the top-n of each set; default: the smallest set's size."
    )


@dataclass
class OverlapResult(Result):
    """Pairwise Jaccard of the sets' top-n (in `labels` order), its chance level (random sets over
    each set's own candidate layers; 0 for disjoint ones; None when the model's width is unknown)
    and each set's count of top-n neurons per layer."""

    command: ClassVar[str] = "overlap"
    SUMMARY: ClassVar[str] = names.OVERLAP
    SETTINGS: ClassVar[tuple[str, ...]] = ("top_n",)

    model: str | None
    top_n: int
    labels: list[str]
    jaccard: list[list[float]]
    chance_jaccard: list[list[float]] | None
    layer_counts: dict[str, list[int]]  # label -> count per layer
    types: list[str | None] | None = None  # each set's neuron type (None: a set without one)

    def write_files(self, out: Path) -> list[str]:
        write_json(out / names.OVERLAP, self.to_json())
        title = f"Jaccard overlap of the top-{self.top_n} neurons"
        types = self.types or [None] * len(self.labels)
        if len(set(types)) > 1:  # one matrix per type: sets of different types hardly overlap
            plots.jaccard_by_type(np.array(self.jaccard), self.labels, types, title, out / names.OVERLAP_FIGURE)
        else:
            plots.annotated_heatmap(np.array(self.jaccard), self.labels, title, out / names.OVERLAP_FIGURE)
        plots.layer_histograms(self.layer_counts, out / names.LAYERS_FIGURE, f"Layers of the top-{self.top_n} neurons")
        return [names.OVERLAP, names.OVERLAP_FIGURE, names.LAYERS_FIGURE]

    def headline(self) -> dict[str, Any]:
        """What the study records of the step: the sets and their Jaccard matrix (3 decimals)."""
        return {"sets": self.labels, "jaccard": [[round(float(x), 3) for x in row] for row in self.jaccard]}

    def summary_lines(self) -> list[str]:
        return [
            f"{a} vs {b}: Jaccard {self.jaccard[i][j]:.3f}"
            for i, a in enumerate(self.labels)
            for j, b in enumerate(self.labels)
            if j > i
        ]


def scores_shape(sets: Sequence[NeuronSet]) -> tuple[int, int] | None:
    """(layers, neurons per layer) of the model, from the scores.safetensors beside the first set
    read from a detect folder; None when no set has one."""
    for s in sets:
        scores = Path(s.source).parent / names.SCORES if s.source else None
        if scores is not None and scores.is_file():
            num_layers, width = read_tensors(scores)["scores"].shape
            return int(num_layers), int(width)
    return None


def same_model(name: str | None) -> str | None:
    """A model name to compare by: a local path that exists here, resolved (a relative and an
    absolute spelling of one folder are one model); a hub id or built-in name as given."""
    if name is not None and Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    return name


def check_one_model(sets: Sequence[NeuronSet]) -> None:
    """InputError unless the sets come from one model: compared by identity where both sets record
    one (the same model at any path or name), else by the model names they record."""
    first = sets[0]
    for other in sets[1:]:
        if first.identity is not None and other.identity is not None:
            if first.identity.same_model(other.identity) is not False:
                continue
            raise InputError(
                f"the neuron sets come from different models: '{first.source}' from '{first.model}' (identity "
                f"{first.identity.key}), '{other.source}' from '{other.model}' (identity {other.identity.key})"
            )
        if same_model(first.model) != same_model(other.model):
            models = {str(s.model) for s in sets}
            raise InputError(f"the neuron sets come from different models ({', '.join(sorted(models))})")


def labels_of(sets: Sequence[NeuronSet]) -> list[str]:
    """`ja type1` per set (`ja lape` for a set without a type, `ja type1 tn-centred` for another
    transfer-neuron score), or the folders of their files when two sets would share a label."""
    labels = [" ".join(p for p in (s.lang, s.neuron_type, None if s.method == "tn" else s.method) if p) for s in sets]
    if len(set(labels)) < len(labels):
        labels = [
            str(Path(s.source).parent) if s.source else f"{label} ({k})"
            for k, (s, label) in enumerate(zip(sets, labels, strict=True))
        ]
    return labels


def run(sets: Sequence[NeuronSet], num_layers: int | None, width: int | None, config: OverlapConfig) -> OverlapResult:
    """Jaccard, chance level and layer counts of the sets' top-n (the command line and the study
    call this). `num_layers` None: one past the highest layer compared; `width` None: no chance level.
    InputError for fewer than two sets, sets of different models, or a set shorter than top_n."""
    if len(sets) < 2:
        raise InputError("overlap needs at least two neuron sets")
    check_one_model(sets)
    n = config.top_n or min(len(s.top) for s in sets)
    for s in sets:
        if n > len(s.top):
            raise InputError(f"--top-n {n} exceeds the {len(s.top)} neurons listed in {s.source}")
    tops = [s.neurons(n) for s in sets]
    if num_layers is None:
        num_layers = 1 + max(layer for top in tops for layer, _ in top)
    if width is not None:
        for s in sets:
            s.check_model(num_layers, width)
    labels = labels_of(sets)
    chance = None
    if width is not None:
        candidates = [s.layers or range(num_layers) for s in sets]
        chance = [[ov.chance_jaccard_over_layers(n, n, a, b, width) for b in candidates] for a in candidates]
    return OverlapResult(
        model=sets[0].model,
        top_n=n,
        labels=labels,
        jaccard=ov.jaccard_matrix(tops).tolist(),
        chance_jaccard=chance,
        layer_counts={label: ov.layer_counts(top, num_layers) for label, top in zip(labels, tops, strict=True)},
        types=[s.neuron_type for s in sets],
    )
