"""What the analyses share: the strict config base, the seeded conditions of a controlled experiment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.interventions import Conditions, Intervention, RandomBaseline, deactivation_conditions
from transfer_neurons.metrics.uncertainty import Estimate, mean_estimate, paired_estimate, random_estimate
from transfer_neurons.model.loading import LoadedModel


def single_language(items: Sequence[Any], what: str) -> str:
    """The one language of `items` (each with a `lang`); InputError when they mix languages or are none."""
    langs = sorted({item.lang for item in items})
    if len(langs) != 1:
        raise InputError(f"{what} needs questions in one language, got {', '.join(langs) or 'none'}")
    return langs[0]


MAX_SEED = 2**32 - 1  # the widest range every seeded library takes (scikit-learn's PCA: 0 to 2**32 - 1)


def seed_field(description: str) -> Any:
    """The field of a seed: an integer from 0 to MAX_SEED (default 0)."""
    return Field(0, ge=0, le=MAX_SEED, description=description)


class Config(BaseModel):
    """An analysis's settings; strict: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False)


class ControlConfig(Config):
    """Settings of an experiment with conditions normal / top-k deactivated / random baseline."""

    top_k: int = Field(100, ge=1, description="Neurons of the set deactivated.")
    baseline: Baseline = Field(Baseline.per_layer, description="Random baseline placement.")
    seed: int = seed_field("Seed of the random baseline and of the bootstrap.")
    baseline_seeds: int = Field(
        5, ge=1, description="Random draws of the baseline (seed, seed + 1, ...), spread over the units of one pass."
    )
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of every interval (0: no intervals).")


def conditions_for(
    lm: LoadedModel, neurons: NeuronSet | None, config: ControlConfig, positions: Positions
) -> Conditions:
    """normal only without a neuron set; else normal, the top-k deactivated and a random baseline
    (InputError for a set of another model)."""
    if neurons is None:
        return {"normal": None}
    lm.check_neurons(neurons)
    return deactivation_conditions(
        neurons,
        config.top_k,
        lm.num_layers,
        lm.mlp_width,
        positions,
        config.baseline,
        config.seed,
        config.baseline_seeds,
        lm.identity(),
    )


def condition_estimates(
    values: dict[str, Sequence[float] | np.ndarray], conditions: Conditions, n_boot: int, seed: int
) -> dict[str, Estimate]:
    """Per condition, the mean of its per-unit `values` (the same units under every condition) with
    its bootstrap interval; the deactivated condition adds its paired difference from the random
    baseline and p; the random one the mean of each seed's draw over its units."""
    random = conditions.get("random")
    out = {}
    for name, units in values.items():
        units = np.asarray(units, dtype=np.float64)
        condition = conditions.get(name)
        if isinstance(condition, RandomBaseline):
            out[name] = random_estimate(units, condition.assignment(len(units)), condition.seeds, n_boot, seed)
        elif name == "deactivated" and random is not None:
            out[name] = paired_estimate(units, np.asarray(values["random"], dtype=np.float64), n_boot, seed)
        else:
            out[name] = mean_estimate(units, n_boot, seed)
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
    random: RandomBaseline | None = None
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
        files = manifest["files"]
        deactivated = Intervention.load(out / names.INTERVENTION) if names.INTERVENTION in files else None
        random = RandomBaseline.load(out / names.BASELINE) if names.BASELINE in files else None
        return {
            "model": manifest["model"],
            "lang": settings.pop("lang"),
            "seed": manifest["seed"],
            "deactivated": deactivated,
            "random": random,
            "settings": settings,
            "timings": manifest["timings_s"],
        }
