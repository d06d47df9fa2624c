"""What the analyses share: the strict config base, the seeded conditions of a controlled experiment."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.hooks.interventions import Conditions, deactivation_conditions
from transfer_neurons.model.loading import LoadedModel


class Config(BaseModel):
    """An analysis's settings; strict (unknown keys are errors) and frozen once built."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)


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
    return deactivation_conditions(neurons, config.top_k, lm.num_layers, lm.mlp_width, positions, config.baseline,
                                   config.seed)  # fmt: skip


def summarize_rows(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric per condition (in order of first appearance), with the count."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["condition"] for row in rows):
        chosen = [row for row in rows if row["condition"] == name]
        out[name] = {"n": len(chosen)} | {m: sum(float(row[m]) for row in chosen) / len(chosen) for m in metrics}
    return out
