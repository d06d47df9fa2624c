"""Latent-space dynamics (DESIGN.md 3.4): per layer and language pair, mutual kNN, parallel vs
non-parallel similarity (raw and centred), MLP activation similarity; across languages, centroid
similarities and a PCA. States are captured once per side; the intervention of an ablation applies
to the L2 inputs only (English untouched)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, read_tensors, write_json, write_tensors
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics import latent
from transfer_neurons.model.loading import LoadedModel

PARTS = ("h", "act")
States = dict[str, torch.Tensor]  # part -> [L, n, dim]


class LatentConfig(Config):
    """Settings of the latent-space analyses."""

    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = Field(None, ge=0.5, le=1.0, description="Outlier clamp quantile before mutual kNN.")
    seed: int = Field(0, description="Seed of the PCA.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")


@dataclass
class PairCurves:
    """Per-layer curves of one en-L2 pair set (one value per layer each)."""

    mknn: list[float]
    parallel_sim: list[float]
    nonparallel_sim: list[float]
    parallel_sim_centered: list[float]
    nonparallel_sim_centered: list[float]
    act_parallel_sim: list[float]
    act_nonparallel_sim: list[float]

    @property
    def gap(self) -> list[float]:
        """Centred parallel minus non-parallel similarity per layer: the alignment signal."""
        return [p - q for p, q in zip(self.parallel_sim_centered, self.nonparallel_sim_centered, strict=True)]

    def peak(self) -> int:
        """The layer where mutual kNN is highest."""
        return max(range(len(self.mknn)), key=self.mknn.__getitem__)


@dataclass
class PairStates:
    """Per-layer states of one en-L2 pair set: parallel sides and non-parallel sides."""

    en: States
    l2: States
    en_np: States
    l2_np: States

    def curves(self, k: int = 10, clamp: float | None = None) -> PairCurves:
        return PairCurves(
            **latent.pair_metrics(
                self.en["h"],
                self.l2["h"],
                self.en_np["h"],
                self.l2_np["h"],
                self.en["act"],
                self.l2["act"],
                self.en_np["act"],
                self.l2_np["act"],
                k=k,
                clamp=clamp,
            )
        )


def check_pairs(pairs: ParallelData, k: int) -> None:
    """Mutual kNN with k neighbours needs more than k pairs."""
    if len(pairs) <= k:
        raise InputError(f"en-{pairs.lang} has {len(pairs)} pairs; mutual kNN with k = {k} needs more than {k}")


def check_nonparallel(pairs: ParallelData, nonparallel: ParallelData, where: str) -> None:
    """Non-parallel pairs stand beside the parallel ones, one each, so that the two similarity
    curves average over as many sentences: InputError (naming `where`) when the counts differ."""
    if len(nonparallel) != len(pairs):
        raise InputError(
            f"{where} has {len(nonparallel)} en-{pairs.lang} pairs but the parallel pairs number {len(pairs)}; "
            "give one non-parallel pair per parallel pair, or none (the L2 side shifted by one)"
        )


def capture_pair(
    lm: LoadedModel,
    pairs: ParallelData,
    nonparallel: ParallelData | None,
    intervention: Intervention | None = None,
    english: tuple[States, States] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> PairStates:
    """Capture h and a for a pair set; the intervention applies to L2 inputs only (English untouched).

    Without a non-parallel set, non-parallel pairs are made by shifting the L2 side by one
    sentence. `english` reuses already captured (parallel, non-parallel) English states.
    """

    def states(sentences: list[str], name: str, iv: Intervention | None) -> States:
        with apply_intervention(lm, iv):
            return collect(lm, sentences, PARTS, batch_size=batch_size, desc=name, progress=progress)

    if english is None:
        en = states(pairs.en, "states (en)", None)
        en_np = en if nonparallel is None else states(nonparallel.en, "states (en, non-parallel)", None)
    else:
        en, en_np = english
    l2 = states(pairs.l2, f"states ({pairs.lang})", intervention)
    if nonparallel is None:
        l2_np = {part: value.roll(-1, dims=1) for part, value in l2.items()}
    else:
        l2_np = states(nonparallel.l2, f"states ({pairs.lang}, non-parallel)", intervention)
    return PairStates(en, l2, en_np, l2_np)


@dataclass
class LatentResult(Result):
    """Curves per language pair, centred centroid similarities and 2-D PCA points per layer."""

    command: ClassVar[str] = "latent"

    model: str
    layers: int
    config: LatentConfig
    nonparallel: dict[str, str]  # lang -> "file" or "shifted"
    pairs: dict[str, PairCurves]
    langs: list[str]  # en first, then the L2 codes
    centroid_similarity: list[np.ndarray]  # per layer, [langs, langs]
    pca: list[dict[str, np.ndarray]] = field(repr=False)  # per layer, lang -> [n, 2]
    timings: dict[str, float] = field(default_factory=dict)

    FIGURES: ClassVar[list[str]] = [
        names.PCA_FIGURE,
        names.CENTROID_FIGURE,
        names.MKNN_FIGURE,
        names.SIMILARITY_FIGURE,
        names.ACT_SIMILARITY_FIGURE,
    ]

    def write_files(self, out: Path) -> list[str]:
        plots.pca_panels(self.pca, out / names.PCA_FIGURE)
        plots.heatmaps(
            self.centroid_similarity,
            self.langs,
            out / names.CENTROID_FIGURE,
            "Cosine similarity of centred language centroids",
        )
        plots.layer_curves(
            {f"en-{lang}": c.mknn for lang, c in self.pairs.items()},
            "Mutual k-NN alignment of parallel en / L2 states",
            "mutual kNN",
            out / names.MKNN_FIGURE,
        )
        sims: dict[str, list[float]] = {}
        acts: dict[str, list[float]] = {}
        for lang, c in self.pairs.items():
            sims |= {f"{lang} parallel": c.parallel_sim_centered, f"{lang} non-parallel": c.nonparallel_sim_centered}
            acts |= {f"{lang} parallel": c.act_parallel_sim, f"{lang} non-parallel": c.act_nonparallel_sim}
        plots.layer_curves(
            sims, "Cosine similarity of en / L2 states (centred)", "cosine", out / names.SIMILARITY_FIGURE
        )
        plots.layer_curves(
            acts, "Cosine similarity of MLP activation vectors", "cosine", out / names.ACT_SIMILARITY_FIGURE
        )
        write_tensors(
            out / names.LATENT_PCA,
            {
                f"pca_{layer}_{lang}": torch.from_numpy(points).float()
                for layer, panel in enumerate(self.pca)
                for lang, points in panel.items()
            },
        )
        write_json(
            out / names.LATENT,
            {
                "schema_version": names.SCHEMA_VERSION,
                "model": self.model,
                "layers": self.layers,
                "k": self.config.k,
                "clamp": self.config.clamp,
                "seed": self.config.seed,
                "nonparallel": self.nonparallel,
                "pairs": {lang: asdict(c) for lang, c in self.pairs.items()},
                "centroid_similarity": {
                    "langs": self.langs,
                    "centered": True,
                    "matrices": [m.tolist() for m in self.centroid_similarity],
                },
                "figures": self.FIGURES,
            },
        )
        return [names.LATENT, names.LATENT_PCA, *self.FIGURES]

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": self.config.model_dump(mode="json"),
            "seed": self.config.seed,
            "timings_s": self.timings,
        }

    @classmethod
    def load(cls, out: str | Path) -> LatentResult:
        out = Path(out)
        manifest = read_manifest(out, cls.command)
        data = read_json(out / names.LATENT)
        assert isinstance(data, dict)
        tensors = read_tensors(out / names.LATENT_PCA)
        langs = data["centroid_similarity"]["langs"]
        pca = [
            {lang: tensors[f"pca_{layer}_{lang}"].double().numpy() for lang in langs} for layer in range(data["layers"])
        ]
        return cls(
            model=data["model"],
            layers=data["layers"],
            config=LatentConfig(**manifest["settings"]),
            nonparallel=data["nonparallel"],
            pairs={lang: PairCurves(**c) for lang, c in data["pairs"].items()},
            langs=langs,
            centroid_similarity=[np.array(m) for m in data["centroid_similarity"]["matrices"]],
            pca=pca,
            timings=manifest.get("timings_s", {}),
        )

    def summary_lines(self) -> list[str]:
        return [
            f"en-{lang}: mutual kNN peaks at layer {c.peak()} ({c.mknn[c.peak()]:.3f})"
            for lang, c in self.pairs.items()
        ]


def run(
    lm: LoadedModel,
    datasets: list[ParallelData],
    nonparallel: dict[str, ParallelData],
    config: LatentConfig,
    progress: bool = False,
) -> LatentResult:
    """Curves per language pair (test pairs, non-parallel pairs from a file or the L2 side shifted
    by one), centroid similarities and PCA across languages."""
    langs = [data.lang for data in datasets]
    if len(set(langs)) != len(langs):
        raise InputError(f"each language may have one pair set; got {', '.join(langs)}")
    for data in datasets:
        check_pairs(data, config.k)
    start = time.perf_counter()
    pairs: dict[str, PairCurves] = {}
    layer_states: dict[str, torch.Tensor] = {}
    for data in datasets:
        states = capture_pair(lm, data, nonparallel.get(data.lang), batch_size=config.batch_size, progress=progress)
        pairs[data.lang] = states.curves(config.k, config.clamp)
        layer_states.setdefault("en", states.en["h"])
        layer_states[data.lang] = states.l2["h"]
    per_layer = [{lang: states[layer] for lang, states in layer_states.items()} for layer in range(lm.num_layers)]
    return LatentResult(
        model=lm.name,
        layers=lm.num_layers,
        config=config,
        nonparallel={d.lang: "file" if d.lang in nonparallel else "shifted" for d in datasets},
        pairs=pairs,
        langs=list(layer_states),
        centroid_similarity=[latent.centroid_cosines(states) for states in per_layer],
        pca=[latent.pca_2d(states, config.seed) for states in per_layer],
        timings={"total": time.perf_counter() - start},
    )
