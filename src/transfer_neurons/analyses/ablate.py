"""Deactivation vs a random baseline on the latent analyses (docs/method.md sections 4, 5, 8): the
pair curves under normal, top-k deactivated and random conditions, the intervention at the last
token of the L2 inputs only (English untouched), as in the paper.

The random baseline is drawn with `baseline_seeds` seeds and every draw runs on every pair; the
draws are a random effect when the deactivated set is compared with them: mean mutual kNN by
`metrics.latent.mknn_versus_random` (swaps of each pair's two conditions for the unit part), the
centred gaps by `metrics.uncertainty.compare_to_draws`. Every summary carries its 95 % interval."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, clamp_field, condition_estimates, conditions_for
from transfer_neurons.analyses.latent import (
    PairCurves,
    PairMeasures,
    PairStates,
    capture_pair,
    check_pairs,
    plot_curves,
    read_units,
    units_tensors,
)
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.codec import encode
from transfer_neurons.artifacts.io import write_json, write_tensors
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Positions
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.hooks.interventions import Conditions, Intervention, RandomBaseline
from transfer_neurons.metrics import latent, neighbours
from transfer_neurons.metrics.uncertainty import Estimate, mean_estimate, t_test
from transfer_neurons.model.loading import LoadedModel

METRICS = ("mean_mknn", "mean_gap", "middle_gap")  # the summary of each condition


class AblateConfig(ControlConfig):
    """Settings of an ablation: the controlled experiment plus the latent analyses' k and clamp."""

    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = clamp_field()
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")


def random_curves(draws: Sequence[PairMeasures], n_boot: int, seed: int) -> PairCurves:
    """The random baseline's curves: each the mean over its draws; bands of the similarity curves by
    BCa over the pairs' draw-averaged values, of mutual kNN from the first draw's subsampling variance
    plus the draws' spread / S."""
    units = {name: np.mean([d.units[name] for d in draws], axis=0) for name in draws[0].units}
    mknn = np.mean([d.curves.mknn for d in draws], axis=0)
    low, high = latent.curve_intervals(units, mknn, None, n_boot, seed)
    first = draws[0].subsamples
    if n_boot and first is not None:
        spread = np.var([d.curves.mknn for d in draws], axis=0, ddof=1) / len(draws) if len(draws) > 1 else 0.0
        se = np.sqrt(neighbours.subsample_variance(*first) + spread)
        low["mknn"], high["mknn"] = (mknn - latent.Z95 * se).tolist(), (mknn + latent.Z95 * se).tolist()
    return PairCurves(**{name: units[name].mean(1).tolist() for name in latent.CURVES}, ci_low=low, ci_high=high)


def plain_summary(
    english: torch.Tensor,
    l2: torch.Tensor,
    measured: PairMeasures,
    k: int,
    clamp: float | None,
    n_boot: int,
    seed: int,
    middle: int,
) -> dict[str, Estimate]:
    """One condition's summary without a random baseline: mean mutual kNN over layers with its
    subsampling interval, mean centred gap and the gap at the middle layer by BCa over the pairs."""
    value = latent.mean_mknn(english, l2, k, clamp)
    variance = latent.mean_variance(english, l2, k, n_boot, seed, clamp) if n_boot else None
    gap = measured.units["gap"]
    return {
        "mean_mknn": Estimate(value, None if variance is None else t_test(value, variance, float("inf"))[0]),
        "mean_gap": mean_estimate(gap.mean(0), n_boot, seed),
        "middle_gap": mean_estimate(gap[middle], n_boot, seed),
    }


def summarize(
    states: dict[str, PairStates],
    draws: Sequence[PairStates],
    measured: dict[str, PairMeasures],
    draw_measures: Sequence[PairMeasures],
    conditions: Conditions,
    config: AblateConfig,
    middle: int,
) -> dict[str, dict[str, Estimate]]:
    """Per condition: mean mutual kNN over layers, mean centred gap over layers and the centred gap
    at the middle layer, each with its interval (the deactivated set with its difference from the
    random draws, the draws a random effect)."""
    k, n_boot, seed, clamp = config.k, config.bootstrap, config.seed, config.clamp
    random = conditions["random"]
    assert isinstance(random, RandomBaseline)
    english = states["normal"].en["h"]
    compared, baseline = latent.mknn_versus_random(
        english, states["deactivated"].l2["h"], [d.l2["h"] for d in draws], k, n_boot, seed, clamp, random.seeds
    )
    normal = plain_summary(english, states["normal"].l2["h"], measured["normal"], k, clamp, n_boot, seed, middle)
    mknn = {"normal": normal["mean_mknn"], "deactivated": compared, "random": baseline}
    gaps = {name: m.units["gap"] for name, m in measured.items()}
    gaps["random"] = np.concatenate([d.units["gap"] for d in draw_measures], axis=1)  # [L, S * n], draw by draw
    mean_gap = condition_estimates({name: g.mean(0) for name, g in gaps.items()}, conditions, n_boot, seed)
    middle_gap = condition_estimates({name: g[middle] for name, g in gaps.items()}, conditions, n_boot, seed)
    return {name: dict(zip(METRICS, (mknn[name], mean_gap[name], middle_gap[name]), strict=True)) for name in gaps}


def versus(estimate: Estimate) -> str:
    """', vs random -0.031 [-0.050, -0.010] (p = 0.002)', ' (10 seeds, sd 0.004)', or ''."""
    if estimate.effect_vs_random is not None:
        p = "" if estimate.p_vs_random is None else f" (p = {estimate.p_vs_random:.3g})"
        return f", vs random {estimate.effect_vs_random.text()}{p}"
    if estimate.seeds is not None:
        spread = "" if estimate.spread is None else f", sd {estimate.spread:.3f}"
        return f" ({len(estimate.seeds)} seeds{spread})"
    return ""


@dataclass
class AblationResult(Result):
    """The pair curves of one language under each condition with their bounds (the random baseline's:
    the mean over its draws), the summary `summary[condition][metric]` (metrics: mean_mknn, mean_gap,
    middle_gap), the two neuron sets used and the per-pair values `units[condition][curve]` ([L, n];
    the random baseline's [S, L, n], one per draw)."""

    command: ClassVar[str] = "ablate"
    SUMMARY: ClassVar[str] = names.ABLATION
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("deactivated", "random", "units")

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
                "summary": encode(self.summary),
                "conditions": encode(curves),
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
        fields = super().manifest_fields()
        fields["settings"]["positions"] = Positions.last.value
        return fields

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {
            "deactivated": Intervention.load(out / names.INTERVENTION),
            "random": RandomBaseline.load(out / names.BASELINE),
            "units": read_units(out / names.ABLATION_UNITS),
        }

    def headline(self) -> dict[str, Any]:
        """What the study records of the step, the model comparison and `load_run` read: the pairs,
        top-k and the summary as JSON."""
        return {"n_pairs": self.n_pairs, "top_k": self.config.top_k, "summary": encode(self.summary)}

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
    seeded random baseline of the same shape (`baseline_seeds` draws, each on every pair)."""
    check_pairs(pairs, config.k)
    conditions = conditions_for(lm, neurons, config, Positions.last)
    deactivated, random = conditions["deactivated"], conditions["random"]
    assert isinstance(deactivated, Intervention) and isinstance(random, RandomBaseline)
    start = time.perf_counter()
    n_boot, seed, batch = config.bootstrap, config.seed, config.batch_size
    normal = capture_pair(lm, pairs, nonparallel, None, batch_size=batch, progress=progress)
    english = (normal.en, normal.en_np)
    states = {
        "normal": normal,
        "deactivated": capture_pair(lm, pairs, nonparallel, deactivated, english, batch, progress),
    }
    draws = [capture_pair(lm, pairs, nonparallel, draw, english, batch, progress) for draw in random.draws]
    measured = {name: s.measure(config.k, config.clamp, n_boot, seed) for name, s in states.items()}
    draw_measures = [d.measure(config.k, config.clamp, n_boot, seed) for d in draws]
    curves = {name: m.curves for name, m in measured.items()} | {"random": random_curves(draw_measures, n_boot, seed)}
    units = {name: m.units for name, m in measured.items()}
    units["random"] = {name: np.stack([d.units[name] for d in draw_measures]) for name in draw_measures[0].units}
    return AblationResult(
        model=lm.name,
        lang=pairs.lang,
        layers=lm.num_layers,
        config=config,
        nonparallel="shifted" if nonparallel is None else "file",
        n_pairs=len(pairs),
        conditions=curves,
        summary=summarize(states, draws, measured, draw_measures, conditions, config, lm.num_layers // 2),
        deactivated=deactivated,
        random=random,
        units=units,
        timings={"total": time.perf_counter() - start},
    )
