"""Latent-space dynamics (docs/method.md section 5): per layer and language pair, mutual kNN, parallel vs
non-parallel similarity (raw and centred), MLP activation similarity; across languages, centroid
similarities and a PCA. States are captured once per side; the intervention of an ablation applies
to the L2 inputs only (English untouched).

Uncertainty (docs/method.md section 8): every curve has per-layer 95 % bounds over the pairs: BCa
for the similarity curves (means of per-pair values), and for mutual kNN, a nearest-neighbour
statistic the bootstrap fails on, an interval centred on the full-sample value with the standard
error of subsampling at a fixed neighbourhood fraction (one subset of pairs serves every layer);
the middle-layer peak's interval and p come from the same subsets. The per-pair values are kept
in `latent_units.safetensors` for anyone to recompute them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config, clamp_field, seed_field
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.codec import JsonValue
from transfer_neurons.artifacts.io import read_json, read_tensors, write_json, write_tensors
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Applied
from transfer_neurons.metrics import latent, neighbours
from transfer_neurons.metrics.latent import MiddlePeak
from transfer_neurons.model.loading import LoadedModel

PARTS = ("h", "act")
States = dict[str, torch.Tensor]  # part -> [L, n, dim]


class LatentConfig(Config):
    """Settings of the latent-space analyses."""

    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = clamp_field()
    seed: int = seed_field("Seed of the PCA and of the bootstrap.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    bootstrap: int = Field(
        1000, ge=0, description="Bootstrap resamples or subsets of pairs of every interval (0: no intervals)."
    )


@dataclass
class PairCurves(JsonValue):
    """Per-layer curves of one en-L2 pair set (one value per layer each) and their 95 % bounds:
    `ci_low[name]` / `ci_high[name]` per layer for each curve and "gap" (empty without bootstrap)."""

    mknn: list[float]
    parallel_sim: list[float]
    nonparallel_sim: list[float]
    parallel_sim_centered: list[float]
    nonparallel_sim_centered: list[float]
    act_parallel_sim: list[float]
    act_nonparallel_sim: list[float]
    ci_low: dict[str, list[float]] = field(default_factory=dict)
    ci_high: dict[str, list[float]] = field(default_factory=dict)

    @property
    def gap(self) -> list[float]:
        """Centred parallel minus non-parallel similarity per layer: the alignment signal."""
        return [p - q for p, q in zip(self.parallel_sim_centered, self.nonparallel_sim_centered, strict=True)]

    def peak(self) -> int:
        """The layer where mutual kNN is highest."""
        return max(range(len(self.mknn)), key=self.mknn.__getitem__)

    def band(self, name: str) -> tuple[list[float], list[float]] | None:
        """The per-layer (low, high) bounds of curve `name` ("gap" included), None without bootstrap."""
        return (self.ci_low[name], self.ci_high[name]) if name in self.ci_low else None


@dataclass
class PairMeasures:
    """One pair set measured: per-pair values [L, n] of every curve and "gap" (`latent.pair_units`),
    mutual kNN on subsets of pairs ([n_sub, L] and their variance factor, `neighbours.mknn_subsamples`;
    None without intervals), and the curves with their bounds."""

    units: dict[str, np.ndarray]
    subsamples: tuple[np.ndarray, float] | None
    curves: PairCurves


@dataclass
class PairStates:
    """Per-layer states of one en-L2 pair set: parallel sides and non-parallel sides."""

    en: States
    l2: States
    en_np: States
    l2_np: States

    def measure(self, k: int, clamp: float | None, n_boot: int, seed: int) -> PairMeasures:
        """Per-pair values, mutual kNN on `n_boot` subsets of pairs (none for 0) and the curves."""
        sides = (self.en, self.l2, self.en_np, self.l2_np)
        units = latent.pair_units([side["h"] for side in sides], [side["act"] for side in sides], k, clamp)
        subsamples = neighbours.mknn_subsamples(self.en["h"], self.l2["h"], k, n_boot, seed, clamp) if n_boot else None
        mknn = units["mknn"].mean(1)
        low, high = latent.curve_intervals(units, mknn, subsamples, n_boot, seed)
        curves = PairCurves(**{name: units[name].mean(1).tolist() for name in latent.CURVES}, ci_low=low, ci_high=high)
        return PairMeasures(units, subsamples, curves)


def units_tensors(units: dict[str, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Per-unit values as safetensors entries "{group}/{name}" (group: a language or a condition)."""
    return {f"{group}/{name}": torch.from_numpy(values) for group, per in units.items() for name, values in per.items()}


def read_units(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The per-unit values written from `units_tensors`, grouped again."""
    units: dict[str, dict[str, np.ndarray]] = {}
    for key, values in read_tensors(path).items():
        group, name = key.split("/", 1)
        units.setdefault(group, {})[name] = values.numpy()
    return units


def plot_curves(series: dict[str, tuple[PairCurves, str]], title: str, ylabel: str, path: Path, n_label: str) -> None:
    """One line per label: the curve `name` ("gap" included) of its PairCurves, with its 95 % band."""
    plots.layer_curves(
        {label: getattr(c, name) for label, (c, name) in series.items()},
        title,
        ylabel,
        path,
        bands={label: band for label, (c, name) in series.items() if (band := c.band(name)) is not None},
        n_label=n_label,
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
    intervention: Applied = None,
    english: tuple[States, States] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> PairStates:
    """Capture h and a for a pair set; the intervention applies to L2 inputs only (English untouched).

    A sequence of interventions (`hooks.interventions.for_units`) gives one per pair, applied alike
    to the pair's parallel and non-parallel L2 sentence. Without a non-parallel set, non-parallel
    pairs are made by shifting the L2 side by one sentence. `english` reuses already captured
    (parallel, non-parallel) English states.
    """

    def states(sentences: list[str], name: str, iv: Applied) -> States:
        return collect(lm, sentences, PARTS, batch_size=batch_size, desc=name, progress=progress, intervention=iv)

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
    """Curves per language pair with their bounds, where mutual kNN peaks (`peaks[lang]`) and how
    much higher it is in the middle layers (`middle_peak[lang]`), centred centroid similarities,
    2-D PCA points per layer, and the per-pair values (`units[lang][curve]`, [L, n])."""

    command: ClassVar[str] = "latent"

    model: str
    layers: int
    config: LatentConfig
    nonparallel: dict[str, str]  # lang -> "file" or "shifted"
    pairs: dict[str, PairCurves]
    langs: list[str]  # en first, then the L2 codes
    centroid_similarity: list[np.ndarray]  # per layer, [langs, langs]
    pca: list[dict[str, np.ndarray]] = field(repr=False)  # per layer, lang -> [n, 2]
    peaks: dict[str, int] = field(default_factory=dict)  # lang -> the layer where mutual kNN is highest
    middle_peak: dict[str, MiddlePeak | None] = field(default_factory=dict)  # None with fewer than 3 layers
    units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    timings: dict[str, float] = field(default_factory=dict)

    FIGURES: ClassVar[list[str]] = [
        names.PCA_FIGURE,
        names.CENTROID_FIGURE,
        names.MKNN_FIGURE,
        names.SIMILARITY_FIGURE,
        names.ACT_SIMILARITY_FIGURE,
    ]

    def n_pairs(self, lang: str) -> int:
        return int(self.units[lang]["mknn"].shape[1])

    def write_files(self, out: Path) -> list[str]:
        counts = sorted({self.n_pairs(lang) for lang in self.pairs})
        n_label = f"n = {' / '.join(map(str, counts))} pairs"
        plots.pca_panels(self.pca, out / names.PCA_FIGURE, f"PCA of sentence states ({n_label} per language)")
        plots.heatmaps(
            self.centroid_similarity,
            self.langs,
            out / names.CENTROID_FIGURE,
            f"Cosine similarity of centred language centroids ({n_label} per language)",
            layers=plots.chosen_layers(self.layers),
        )
        plot_curves(
            {f"en-{lang}": (c, "mknn") for lang, c in self.pairs.items()},
            "Mutual k-NN alignment of parallel en / L2 states",
            "mutual kNN",
            out / names.MKNN_FIGURE,
            n_label,
        )
        for figure, title, parallel in (
            (names.SIMILARITY_FIGURE, "Cosine similarity of en / L2 states (centred)", "parallel_sim_centered"),
            (names.ACT_SIMILARITY_FIGURE, "Cosine similarity of MLP activation vectors", "act_parallel_sim"),
        ):
            nonparallel = parallel.replace("parallel", "nonparallel")
            series = {f"{lang} parallel": (c, parallel) for lang, c in self.pairs.items()}
            series |= {f"{lang} non-parallel": (c, nonparallel) for lang, c in self.pairs.items()}
            plot_curves(series, title, "cosine", out / figure, n_label)
        write_tensors(
            out / names.LATENT_PCA,
            {
                f"pca_{layer}_{lang}": torch.from_numpy(points).float()
                for layer, panel in enumerate(self.pca)
                for lang, points in panel.items()
            },
        )
        write_tensors(out / names.LATENT_UNITS, units_tensors(self.units))
        write_json(
            out / names.LATENT,
            {
                "schema_version": names.SCHEMA_VERSION,
                "model": self.model,
                "layers": self.layers,
                "k": self.config.k,
                "clamp": self.config.clamp,
                "seed": self.config.seed,
                "bootstrap": self.config.bootstrap,
                "nonparallel": self.nonparallel,
                "pairs": {lang: self.pair_json(lang) for lang in self.pairs},
                "centroid_similarity": {
                    "langs": self.langs,
                    "centered": True,
                    "matrices": [m.tolist() for m in self.centroid_similarity],
                },
                "figures": self.FIGURES,
            },
        )
        return [names.LATENT, names.LATENT_PCA, names.LATENT_UNITS, *self.FIGURES]

    def pair_json(self, lang: str) -> dict[str, Any]:
        """A pair's object in latent.json: its curves with ci_low / ci_high, peak and middle_peak."""
        middle = self.middle_peak.get(lang)
        return {
            "n": self.n_pairs(lang),
            **asdict(self.pairs[lang]),
            "peak": {"layer": self.peaks[lang]},
            "middle_peak": None if middle is None else middle.to_json(),
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
        pairs = data["pairs"]
        return cls(
            **cls.manifest_values(manifest),
            layers=data["layers"],
            nonparallel=data["nonparallel"],
            pairs={lang: PairCurves.from_json(c) for lang, c in pairs.items()},
            langs=langs,
            centroid_similarity=[np.array(m) for m in data["centroid_similarity"]["matrices"]],
            pca=pca,
            peaks={lang: int(c["peak"]["layer"]) for lang, c in pairs.items()},
            middle_peak={
                lang: None if c["middle_peak"] is None else MiddlePeak.from_json(c["middle_peak"])
                for lang, c in pairs.items()
            },
            units=read_units(out / names.LATENT_UNITS),
        )

    def headline(self) -> dict[str, Any]:
        """What the study records of the step: k and where mutual kNN peaks per language."""
        return {"k": self.config.k, "mknn_peak_layer": self.peaks}

    def summary_lines(self) -> list[str]:
        lines = []
        for lang, c in self.pairs.items():
            peak, middle = self.peaks[lang], self.middle_peak.get(lang)
            line = f"en-{lang}: mutual kNN (k = {self.config.k}, n = {self.n_pairs(lang)}) peaks at layer {peak}"
            line += f" ({c.mknn[peak]:.3f})"
            if middle is not None:
                bounds = "" if middle.ci is None else f" [{middle.ci[0]:.3f}, {middle.ci[1]:.3f}]"
                p = "" if middle.p is None else f", p = {middle.p:.3g}"
                line += f"; middle minus outer layers {middle.value:+.3f}{bounds} ({middle.n} pairs{p})"
            lines.append(line)
        return lines


def run(
    lm: LoadedModel,
    datasets: list[ParallelData],
    nonparallel: dict[str, ParallelData],
    config: LatentConfig,
    progress: bool = False,
) -> LatentResult:
    """Curves per language pair (test pairs, non-parallel pairs from a file or the L2 side shifted
    by one) with their bounds, the peak layer and the middle-layer peak; centroid similarities and
    PCA across languages."""
    langs = [data.lang for data in datasets]
    if len(set(langs)) != len(langs):
        raise InputError(f"each language may have one pair set; got {', '.join(langs)}")
    for data in datasets:
        check_pairs(data, config.k)
    start = time.perf_counter()
    measured: dict[str, PairMeasures] = {}
    layer_states: dict[str, torch.Tensor] = {}
    for data in datasets:
        states = capture_pair(lm, data, nonparallel.get(data.lang), batch_size=config.batch_size, progress=progress)
        measured[data.lang] = states.measure(config.k, config.clamp, config.bootstrap, config.seed)
        layer_states.setdefault("en", states.en["h"])
        layer_states[data.lang] = states.l2["h"]
    per_layer = [{lang: states[layer] for lang, states in layer_states.items()} for layer in range(lm.num_layers)]
    return LatentResult(
        model=lm.name,
        layers=lm.num_layers,
        config=config,
        nonparallel={d.lang: "file" if d.lang in nonparallel else "shifted" for d in datasets},
        pairs={lang: m.curves for lang, m in measured.items()},
        langs=list(layer_states),
        centroid_similarity=[latent.centroid_cosines(states) for states in per_layer],
        pca=[latent.pca_2d(states, config.seed) for states in per_layer],
        peaks={lang: m.curves.peak() for lang, m in measured.items()},
        middle_peak={
            lang: latent.middle_peak(np.array(m.curves.mknn), m.subsamples, len(data))
            for (lang, m), data in zip(measured.items(), datasets, strict=True)
        },
        units={lang: m.units for lang, m in measured.items()},
        timings={"total": time.perf_counter() - start},
    )
