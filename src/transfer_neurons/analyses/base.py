"""What the analyses share: the strict config base, the seeded conditions of a controlled experiment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.interventions import Conditions, Intervention, deactivation_conditions
from transfer_neurons.model.loading import LoadedModel


def single_language(items: Sequence[Any], what: str) -> str:
    """The one language of `items` (each with a `lang`); InputError when they mix languages or are none."""
    langs = sorted({item.lang for item in items})
    if len(langs) != 1:
        raise InputError(f"{what} needs questions in one language, got {', '.join(langs) or 'none'}")
    return langs[0]


class Config(BaseModel):
    """An analysis's settings; strict: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False)


class ControlConfig(Config):
    """Settings of an experiment with conditions normal / top-k deactivated / random baseline."""

    top_k: int = Field(100, ge=1, description="Neurons of the set deactivated.")
    baseline: Baseline = Field(Baseline.per_layer, description="Random baseline placement.")
    seed: int = Field(0, description="Seed of the random baseline.")


def conditions_for(
    lm: LoadedModel, neurons: NeuronSet | None, config: ControlConfig, positions: Positions
) -> Conditions:
    """normal only without a neuron set; else normal, the top-k deactivated and a random baseline."""
    if neurons is None:
        return {"normal": None}
    return deactivation_conditions(
        neurons, config.top_k, lm.num_layers, lm.mlp_width, positions, config.baseline, config.seed
    )


def summarize_rows(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric per condition (in order of first appearance), with the count."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["condition"] for row in rows):
        chosen = [row for row in rows if row["condition"] == name]
        out[name] = {"n": len(chosen)} | {m: sum(float(row[m]) for row in chosen) / len(chosen) for m in metrics}
    return out


@dataclass(kw_only=True)
class ControlledResult(Result):
    """What every result of a controlled experiment holds besides its measurements: the model, the
    language, the seed, the two neuron sets compared with normal (None without a neuron set), the
    recorded settings and the timings."""

    model: str
    lang: str
    seed: int
    deactivated: Intervention | None = None
    random: Intervention | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # recorded settings besides lang
    timings: dict[str, float] = field(default_factory=dict)

    def header(self, **extra: Any) -> dict[str, Any]:
        """The leading keys of the result's JSON summary."""
        return {
            "schema_version": names.SCHEMA_VERSION,
            "model": self.model,
            "lang": self.lang,
            **extra,
            **self.settings,
            "seed": self.seed,
        }

    def write_interventions(self, out: Path) -> list[str]:
        """intervention.json and baseline.json, when the run compared neuron sets."""
        if self.deactivated is None or self.random is None:
            return []
        self.deactivated.save(out / names.INTERVENTION)
        self.random.save(out / names.BASELINE)
        return [names.INTERVENTION, names.BASELINE]

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": {"lang": self.lang, **self.settings},
            "seed": self.seed,
            "timings_s": self.timings,
        }

    @classmethod
    def read_common(cls, out: Path) -> dict[str, Any]:
        """The shared fields of a complete folder written by `save`, as keyword arguments."""
        manifest = read_manifest(out, cls.command)
        settings = dict(manifest["settings"])
        deactivated, random = (
            Intervention.load(out / name) if name in manifest["files"] else None
            for name in (names.INTERVENTION, names.BASELINE)
        )
        return {
            "model": manifest["model"],
            "lang": settings.pop("lang"),
            "seed": manifest["seed"],
            "deactivated": deactivated,
            "random": random,
            "settings": settings,
            "timings": manifest["timings_s"],
        }
