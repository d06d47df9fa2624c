"""What the analyses share: the strict config base, the seeded conditions of a controlled experiment
and its one run (`controlled_run`)."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from transfer_neurons.analyses.units import compared
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.interventions import Conditions, Intervention, RandomBaseline, deactivation_conditions
from transfer_neurons.metrics.uncertainty import Estimate, compare_to_draws, mean_estimate
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


def baseline_field() -> Any:
    """The field of a random baseline's placement (default: per layer)."""
    return Field(
        Baseline.per_layer, description="Random baseline: same count per layer, or uniform over the candidate layers."
    )


def bootstrap_field() -> Any:
    """The field of the bootstrap resamples of a result's intervals (default 1000)."""
    return Field(
        1000, ge=0, description="Bootstrap resamples of every 95% interval (0: no intervals; the model is not rerun)."
    )


def max_items_field(items: str) -> Any:
    """The field of an item limit: at most this many `items` (default: all)."""
    return Field(None, ge=1, description=f"Use at most this many {items} (default: all).")


def clamp_field() -> Any:
    """The field of the outlier clamp before mutual kNN (default: none)."""
    return Field(
        None, ge=0.5, le=1.0, description="Clamp outliers at this quantile (0.5 to 1) before mutual kNN (e.g. 0.95)."
    )


class Config(BaseModel):
    """An analysis's settings; strict: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False)


class ControlConfig(Config):
    """Settings of an experiment with conditions normal / top-k deactivated / random baseline."""

    top_k: int = Field(100, ge=1, description="Deactivate the top-k neurons of the set.")
    baseline: Baseline = baseline_field()
    seed: int = seed_field("Seed of the random baseline and of the bootstrap.")
    baseline_seeds: int = Field(
        5, ge=1, description="Random baseline draws (seeds seed, seed + 1, ...), each on every unit."
    )
    bootstrap: int = bootstrap_field()


class TaskConfig(ControlConfig):
    """Settings of a downstream command's run (`controlled_run`): the top 1000 neurons deactivated by
    default, at the positions each task sets."""

    top_k: int = Field(1000, ge=1, description="Deactivate the top-k neurons of the set.")
    positions: Positions  # each task's own default


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
    """Per condition, the mean of its per-unit `values` with its interval (`mean_estimate`); the
    random baseline's values are every draw on every unit, draw by draw ([S * n], as `for_units`
    orders them), and the deactivated condition adds its difference from the draws, the draws a
    random effect (`uncertainty.compare_to_draws`)."""
    random = conditions.get("random")
    draws = None
    if isinstance(random, RandomBaseline) and "random" in values:
        draws = np.asarray(values["random"], dtype=np.float64).reshape(len(random.draws), -1)
    out: dict[str, Estimate] = {}
    for name, units in values.items():
        if draws is not None and name == "random":
            continue
        if draws is not None and name == "deactivated":
            assert isinstance(random, RandomBaseline)
            out[name], out["random"] = compare_to_draws(units, draws, random.seeds, n_boot, seed)
        else:
            out[name] = mean_estimate(units, n_boot, seed)
    if draws is not None and "random" not in out:
        assert isinstance(random, RandomBaseline)
        out["random"] = compare_to_draws(draws[0], draws, random.seeds, n_boot, seed)[1]
    return {name: out[name] for name in values}


def row_estimates(rows: Sequence[dict], key: str, conditions: Conditions, config: ControlConfig) -> dict[str, Estimate]:
    """Per condition, the Estimate of the mean of its rows' `key` (`condition_estimates`)."""
    values: dict[str, Sequence[float] | np.ndarray] = {
        name: [float(row[key]) for row in rows if row["condition"] == name] for name in conditions
    }
    return condition_estimates(values, conditions, config.bootstrap, config.seed)


@dataclass(kw_only=True)
class ControlledResult(Result):
    """What every result of a controlled experiment holds besides its measurements: the model, the
    language, the seed, the two neuron sets compared with normal (None without a neuron set), the
    recorded settings, the timings and the per-item rows."""

    model: str
    lang: str
    seed: int
    deactivated: Intervention | None = None
    random: RandomBaseline | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # recorded settings besides lang
    timings: dict[str, float] = field(default_factory=dict)
    rows: list[dict]  # one per item and condition

    TASK: ClassVar[str]  # names its files: the rows, the JSON summary and the figure
    SETTINGS: ClassVar[tuple[str, ...]] = ("lang",)
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("deactivated", "random", "rows")

    def headline(self) -> dict[str, Any]:
        """What the study records of the step and `load_run` read: the top-k (None without a neuron
        set) and the `conditions` of the JSON summary."""
        return {"top_k": self.settings.get("top_k"), "conditions": self.to_json()["conditions"]}

    @abstractmethod
    def plot(self, path: Path) -> None:
        """Draw the result's figure into `path`."""

    def write_files(self, out: Path) -> list[str]:
        """The rows, the JSON summary, the figure and, when the run compared neuron sets,
        intervention.json and baseline.json."""
        files = [names.rows(self.TASK), names.summary(self.TASK), names.figure(self.TASK)]
        write_jsonl(out / names.rows(self.TASK), self.rows)
        write_json(out / names.summary(self.TASK), self.to_json())
        self.plot(out / names.figure(self.TASK))
        if self.deactivated is None or self.random is None:
            return files
        self.deactivated.save(out / names.INTERVENTION)
        self.random.save(out / names.BASELINE)
        return [*files, names.INTERVENTION, names.BASELINE]

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        files = manifest["files"]
        return {
            "rows": read_jsonl(out / names.rows(cls.TASK)),
            "deactivated": Intervention.load(out / names.INTERVENTION) if names.INTERVENTION in files else None,
            "random": RandomBaseline.load(out / names.BASELINE) if names.BASELINE in files else None,
        }


@dataclass(kw_only=True)
class DownstreamResult(ControlledResult):
    """The result of a downstream task (QA, multiple choice, output language): besides all it measures,
    one headline metric per condition, which the study's report tabulates and its findings test."""

    UNITS: ClassVar[str]  # what the task runs on: questions, prompts

    @property
    def n_units(self) -> int:
        """Units per condition (each condition runs the same ones; the random baseline once per draw)."""
        return sum(row["condition"] == "normal" for row in self.rows)

    @abstractmethod
    def metric(self) -> dict[str, Estimate]:
        """Per condition, the Estimate of the headline metric."""


C = TypeVar("C", bound=ControlledResult)


def controlled_run(
    result: type[C],
    lm: LoadedModel,
    lang: str,
    neurons: NeuronSet | None,
    config: TaskConfig,
    measure: Callable[[Conditions], tuple[list[dict], dict[str, Any]]],
    settings: Callable[[], dict[str, Any]],
    tail: dict[str, Any],
) -> C:
    """The one run of a controlled experiment: its conditions (`conditions_for`), then `measure` under
    them (the rows and the result's measured fields), recorded with the settings: top-k and positions,
    the task's own `settings()`, the baseline's and the bootstrap's, then `tail`."""
    start = time.perf_counter()
    conditions = conditions_for(lm, neurons, config, config.positions)
    deactivated, random = compared(conditions)
    rows, measured = measure(conditions)
    recorded = {
        "top_k": config.top_k if neurons else None,
        "positions": config.positions.value,
        **settings(),
        "baseline": config.baseline.value,
        "baseline_seeds": config.baseline_seeds if neurons else None,
        "bootstrap": config.bootstrap,
        **tail,
    }
    return result(
        model=lm.name,
        lang=lang,
        seed=config.seed,
        **measured,
        rows=rows,
        deactivated=deactivated,
        random=random,
        settings=recorded,
        timings={"total": time.perf_counter() - start},
    )
