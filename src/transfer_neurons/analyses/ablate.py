"""Deactivation vs a random baseline on the latent analyses (DESIGN.md 3.3, 3.4, 3.8): the pair
curves under normal, top-k deactivated and random conditions, the intervention at the last token of
the L2 inputs only (English untouched), as in the paper.

The random baseline is drawn with several seeds and spread over the pairs of one pass (pair i runs
under draw `random.assignment(n)[i]`); every summary number carries a bootstrap interval over the
pairs, and the deactivated condition its paired difference from the random one with a p-value."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, condition_estimates, conditions_for
from transfer_neurons.analyses.latent import (
    PairCurves,
    PairMeasures,
    capture_pair,
    check_pairs,
    plot_curves,
    read_units,
    units_tensors,
)
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import read_json, write_json, write_tensors
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Positions
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.hooks.interventions import Conditions, Intervention, RandomBaseline, for_units
from transfer_neurons.metrics.uncertainty import Estimate, interval, resample_indices
from transfer_neurons.model.loading import LoadedModel

METRICS = ("mean_mknn", "mean_gap", "middle_gap")  # the summary of each condition


class AblateConfig(ControlConfig):
    """Settings of an ablation: the controlled experiment plus the latent analyses' k and clamp."""

    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = Field(None, ge=0.5, le=1.0, description="Outlier clamp quantile before mutual kNN.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")


def mknn_estimates(
    rows: dict[str, Sequence[float] | np.ndarray],
    resamples: dict[str, np.ndarray],
    conditions: Conditions,
    seed: int,
) -> dict[str, Estimate]:
    """Mean mutual kNN over layers per condition: the value, the deactivated condition's difference
    from random with its paired permutation p, and the random condition's per-seed values from each
    pair's row hits `rows[condition]` [n] (averaged over layers); every interval, the difference's
    too, from mutual kNN recomputed on the same resamples of pairs `resamples[condition]` [n_boot]
    (averaged over layers), not from the row hits; no intervals without resamples."""
    out = condition_estimates(rows, conditions, 0, seed)
    for name, estimate in out.items():
        if len(resamples[name]) == 0:
            continue
        effect = estimate.effect_vs_random
        if effect is not None:
            effect = replace(effect, ci=interval(resamples[name] - resamples["random"]))
        out[name] = replace(estimate, ci=interval(resamples[name]), effect_vs_random=effect)
    return out


def summarize(
    measured: dict[str, PairMeasures], conditions: Conditions, middle: int, n_boot: int, seed: int
) -> dict[str, dict[str, Estimate]]:
    """Per condition: mean mutual kNN over layers, mean centred gap over layers and the centred gap
    at the middle layer, each with its interval (and, deactivated, its difference from random)."""
    mknn = mknn_estimates(
        {name: m.units["mknn"].mean(0) for name, m in measured.items()},
        {name: m.mknn_boot.mean(1) for name, m in measured.items()},
        conditions,
        seed,
    )
    gaps = {name: m.units["gap"] for name, m in measured.items()}
    mean_gap = condition_estimates({name: g.mean(0) for name, g in gaps.items()}, conditions, n_boot, seed)
    middle_gap = condition_estimates({name: g[middle] for name, g in gaps.items()}, conditions, n_boot, seed)
    return {name: dict(zip(METRICS, (mknn[name], mean_gap[name], middle_gap[name]), strict=True)) for name in measured}


def versus(estimate: Estimate) -> str:
    """', vs random -0.031 [-0.050, -0.010] (p = 0.002)', ' (5 seeds, sd 0.004)', or ''."""
    if estimate.effect_vs_random is not None:
        return f", vs random {estimate.effect_vs_random.text()} (p = {estimate.p_vs_random:.3g})"
    if estimate.seeds is not None:
        spread = "" if estimate.spread is None else f", sd {estimate.spread:.3f}"
        return f" ({len(estimate.seeds)} seeds{spread})"
    return ""


@dataclass
class AblationResult(Result):
    """The pair curves of one language under each condition with their bounds, the summary
    `summary[condition][metric]` (metrics: mean_mknn, mean_gap, middle_gap), the two neuron sets
    used and the per-pair values `units[condition][curve]` ([L, n]; `units["random"]["draw"]` [n]:
    the baseline draw each pair ran under)."""

    command: ClassVar[str] = "ablate"

    model: str
    lang: str
    layers: int
    config: AblateConfig
    nonparallel: str  # "file" or "shifted"
    n_pairs: int
    conditions: dict[str, PairCurves]
    summary: dict[str, dict[str, Estimate]]
    deactivated: Intervention
    random: RandomBaseline
    units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def middle_layer(self) -> int:
        return self.layers // 2

    def write_files(self, out: Path) -> list[str]:
        self.deactivated.save(out / names.INTERVENTION)
        self.random.save(out / names.BASELINE)
        lang, curves, n_label = self.lang, self.conditions, f"n = {self.n_pairs} pairs"
        for figure, title, ylabel, curve in (
            (names.ABLATION_MKNN_FIGURE, "Mutual k-NN alignment", "mutual kNN", "mknn"),
            (names.ABLATION_GAP_FIGURE, "Parallel minus non-parallel similarity (centred)", "cosine gap", "gap"),
            (names.ABLATION_ACT_FIGURE, "MLP activation similarity of parallel pairs", "cosine", "act_parallel_sim"),
        ):
            series = {name: (c, curve) for name, c in curves.items()}
            plot_curves(series, f"{title}, en-{lang}", ylabel, out / figure, n_label)
        write_tensors(out / names.ABLATION_UNITS, units_tensors(self.units))
        write_json(
            out / names.ABLATION,
            {
                "schema_version": names.SCHEMA_VERSION,
                "model": self.model,
                "lang": lang,
                "top_k": self.config.top_k,
                "layers": self.layers,
                "k": self.config.k,
                "clamp": self.config.clamp,
                "seed": self.config.seed,
                "bootstrap": self.config.bootstrap,
                "n_pairs": self.n_pairs,
                "baseline": {
                    "mode": self.config.baseline.value,
                    "seeds": list(self.random.seeds),
                    "counts_per_layer": self.random.counts_per_layer(),
                },
                "nonparallel": self.nonparallel,
                "middle_layer": self.middle_layer,
                "summary": {
                    name: {metric: e.to_json() for metric, e in metrics.items()}
                    for name, metrics in self.summary.items()
                },
                "conditions": {name: asdict(c) for name, c in curves.items()},
            },
        )
        return [
            names.ABLATION,
            names.ABLATION_UNITS,
            names.INTERVENTION,
            names.BASELINE,
            names.ABLATION_MKNN_FIGURE,
            names.ABLATION_GAP_FIGURE,
            names.ABLATION_ACT_FIGURE,
        ]

    def manifest_fields(self) -> dict[str, Any]:
        settings = {**self.config.model_dump(mode="json"), "positions": Positions.last.value}
        return {"model": self.model, "settings": settings, "seed": self.config.seed, "timings_s": self.timings}

    @classmethod
    def load(cls, out: str | Path) -> AblationResult:
        out = Path(out)
        manifest = read_manifest(out, cls.command)
        data = read_json(out / names.ABLATION)
        assert isinstance(data, dict)
        settings = {k: v for k, v in manifest["settings"].items() if k != "positions"}
        return cls(
            model=data["model"],
            lang=data["lang"],
            layers=data["layers"],
            config=AblateConfig(**settings),
            nonparallel=data["nonparallel"],
            n_pairs=data["n_pairs"],
            conditions={name: PairCurves.from_json(c) for name, c in data["conditions"].items()},
            summary={
                name: {metric: Estimate.from_json(e) for metric, e in metrics.items()}
                for name, metrics in data["summary"].items()
            },
            deactivated=Intervention.load(out / names.INTERVENTION),
            random=RandomBaseline.load(out / names.BASELINE),
            units=read_units(out / names.ABLATION_UNITS),
            timings=manifest.get("timings_s", {}),
        )

    def summary_lines(self) -> list[str]:
        return [
            f"{name:>11}: mean mutual kNN {s['mean_mknn'].text()}{versus(s['mean_mknn'])}; centred gap at layer "
            f"{self.middle_layer} {s['middle_gap'].text()}{versus(s['middle_gap'])}"
            for name, s in self.summary.items()
        ]


def run(
    lm: LoadedModel,
    neurons: NeuronSet,
    pairs: ParallelData,
    nonparallel: ParallelData | None,
    config: AblateConfig,
    progress: bool = False,
) -> AblationResult:
    """Deactivate the top-k neurons of `neurons` on the L2 inputs and compare with normal and a
    seeded random baseline of the same shape (`baseline_seeds` draws spread over the pairs)."""
    check_pairs(pairs, config.k)
    conditions = conditions_for(lm, neurons, config, Positions.last)
    start = time.perf_counter()
    n = len(pairs)
    index = resample_indices(n, config.bootstrap, config.seed)  # shared by every condition
    normal = capture_pair(lm, pairs, nonparallel, None, batch_size=config.batch_size, progress=progress)
    english = (normal.en, normal.en_np)
    measured: dict[str, PairMeasures] = {}
    for name, condition in conditions.items():
        states = (
            normal
            if condition is None
            else capture_pair(lm, pairs, nonparallel, for_units(condition, n), english, config.batch_size, progress)
        )
        measured[name] = states.measure(config.k, config.clamp, index)
    deactivated, random = conditions["deactivated"], conditions["random"]
    assert isinstance(deactivated, Intervention) and isinstance(random, RandomBaseline)
    units = {name: m.units for name, m in measured.items()}
    units["random"] = {**units["random"], "draw": random.assignment(n)}
    return AblationResult(
        model=lm.name,
        lang=pairs.lang,
        layers=lm.num_layers,
        config=config,
        nonparallel="shifted" if nonparallel is None else "file",
        n_pairs=n,
        conditions={name: m.curves for name, m in measured.items()},
        summary=summarize(measured, conditions, lm.num_layers // 2, config.bootstrap, config.seed),
        deactivated=deactivated,
        random=random,
        units=units,
        timings={"total": time.perf_counter() - start},
    )
