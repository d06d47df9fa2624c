"""Deactivation vs a random baseline on the latent analyses (DESIGN.md 3.3, 3.4): the pair curves
under normal, top-k deactivated and random conditions, the intervention at the last token of the
L2 inputs only (English untouched), as in the paper."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, conditions_for
from transfer_neurons.analyses.latent import PairCurves, capture_pair, check_pairs
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, write_json
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Positions
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.hooks.interventions import Intervention
from transfer_neurons.model.loading import LoadedModel


class AblateConfig(ControlConfig):
    """Settings of an ablation: the controlled experiment plus the latent analyses' k and clamp."""

    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = Field(None, ge=0.5, le=1.0, description="Outlier clamp quantile before mutual kNN.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")


@dataclass
class ConditionSummary:
    """Two numbers per condition: mean mutual kNN over layers, centred gap at the middle layer."""

    mean_mknn: float
    middle_gap: float


@dataclass
class AblationResult(Result):
    """The pair curves of one language under each condition, and the two neuron sets used."""

    command: ClassVar[str] = "ablate"

    model: str
    lang: str
    layers: int
    config: AblateConfig
    nonparallel: str  # "file" or "shifted"
    conditions: dict[str, PairCurves]
    deactivated: Intervention
    random: Intervention
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def middle_layer(self) -> int:
        return self.layers // 2

    @property
    def summary(self) -> dict[str, ConditionSummary]:
        return {
            name: ConditionSummary(sum(c.mknn) / len(c.mknn), c.gap[self.middle_layer])
            for name, c in self.conditions.items()
        }

    def write_files(self, out: Path) -> list[str]:
        self.deactivated.save(out / names.INTERVENTION)
        self.random.save(out / names.BASELINE)
        lang, curves = self.lang, self.conditions
        plots.layer_curves(
            {n: c.mknn for n, c in curves.items()},
            f"Mutual k-NN alignment, en-{lang}",
            "mutual kNN",
            out / names.ABLATION_MKNN_FIGURE,
        )
        plots.layer_curves(
            {n: c.gap for n, c in curves.items()},
            f"Parallel minus non-parallel similarity (centred), en-{lang}",
            "cosine gap",
            out / names.ABLATION_GAP_FIGURE,
        )
        plots.layer_curves(
            {n: c.act_parallel_sim for n, c in curves.items()},
            f"MLP activation similarity of parallel pairs, en-{lang}",
            "cosine",
            out / names.ABLATION_ACT_FIGURE,
        )
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
                "baseline": {
                    "mode": self.config.baseline.value,
                    "seed": self.config.seed,
                    "counts_per_layer": self.random.counts_per_layer(),
                },
                "nonparallel": self.nonparallel,
                "middle_layer": self.middle_layer,
                "summary": {name: asdict(s) for name, s in self.summary.items()},
                "conditions": {name: asdict(c) for name, c in curves.items()},
            },
        )
        return [
            names.ABLATION,
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
            conditions={name: PairCurves(**c) for name, c in data["conditions"].items()},
            deactivated=Intervention.load(out / names.INTERVENTION),
            random=Intervention.load(out / names.BASELINE),
            timings=manifest.get("timings_s", {}),
        )

    def summary_lines(self) -> list[str]:
        return [
            f"{name:>11}: mean mutual kNN {s.mean_mknn:.3f}, parallel - non-parallel similarity at layer "
            f"{self.middle_layer}: {s.middle_gap:+.3f}"
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
    seeded random baseline of the same shape."""
    check_pairs(pairs, config.k)
    conditions = conditions_for(lm, neurons, config, Positions.last)
    start = time.perf_counter()
    normal = capture_pair(lm, pairs, nonparallel, None, batch_size=config.batch_size, progress=progress)
    english = (normal.en, normal.en_np)
    curves = {}
    for name, intervention in conditions.items():
        states = (
            normal
            if intervention is None
            else capture_pair(lm, pairs, nonparallel, intervention, english, config.batch_size, progress)
        )
        curves[name] = states.curves(config.k, config.clamp)
    deactivated, random = conditions["deactivated"], conditions["random"]
    assert deactivated is not None and random is not None
    return AblationResult(
        model=lm.name,
        lang=pairs.lang,
        layers=lm.num_layers,
        config=config,
        nonparallel="shifted" if nonparallel is None else "file",
        conditions=curves,
        deactivated=deactivated,
        random=random,
        timings={"total": time.perf_counter() - start},
    )
