"""Steering the output language (docs/method.md sections 4 and 7, "Steering"): continuations of
source-language prompts under each neuron set steered toward a target language by `add`, `set`,
`diffmean` or `scale` over a grid of alpha, each against random sets of the same per-layer shape.
Alpha is chosen on a dev split of the prompts (highest target share, then highest log-likelihood,
then smallest |alpha|) and the chosen conditions are reported on the held-out test split."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from transfer_neurons.analyses.base import Config, seed_field
from transfer_neurons.analyses.means import LanguageMeans
from transfer_neurons.analyses.output_lang import identifier_for
from transfer_neurons.analyses.steer_grid import Arm, SteerMethod, arm_estimates, build_arm, measure, method_values
from transfer_neurons.analyses.units import describe
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Positions
from transfer_neurons.errors import InputError
from transfer_neurons.metrics.langid import STUDY_LANGS
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.model.loading import LoadedModel

SPLIT_NOTE = "alpha chosen on the dev prompts (highest target share), reported on the held-out test prompts"


class SteerConfig(Config):
    """Settings of a steering run (the defaults of the `steer` command)."""

    top_k: int = Field(100, ge=1, description="Steer the top-k neurons of each set.")
    methods: tuple[SteerMethod, ...] = Field(
        (SteerMethod.add, SteerMethod.diffmean), min_length=1, description="Steering methods."
    )
    alphas: tuple[float, ...] = Field((1.0, 2.0, 4.0), min_length=1, description="The grid of alpha.")
    deactivate_source: bool = Field(
        False, description="Also run every condition with the source language's set deactivated."
    )
    positions: Positions = Field(Positions.all, description="Where to steer; 'all' includes the generated tokens.")
    dev_fraction: float = Field(1 / 3, gt=0, lt=1, description="Share of the prompts that choose alpha.")
    baseline_seeds: int = Field(1, ge=1, description="Random sets per condition (seed, seed + 1, ...).")
    seed: int = seed_field("Seed of the split, the random sets and the bootstrap.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of every interval (0: no intervals).")
    max_new_tokens: int = Field(24, ge=1, description="Tokens to generate per prompt.")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    max_prompts: int | None = Field(None, ge=2, description="Use at most this many prompts (None: all).")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS, description="Languages the identifier chooses among (plus source and target)."
    )


@dataclass(frozen=True)
class Cell:
    """One condition's summaries: per metric, steered (with its effect vs random) and random."""

    key: dict[str, Any]
    steered: dict[str, Estimate]
    random: dict[str, Estimate]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.key,
            "steered": {m: e.to_json() for m, e in self.steered.items()},
            "random": {m: e.to_json() for m, e in self.random.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        parts = {arm: {m: Estimate.from_json(e) for m, e in data.pop(arm).items()} for arm in ("steered", "random")}
        return cls(data, parts["steered"], parts["random"])

    @property
    def label(self) -> str:
        return f"{self.key['set']} {self.key['method']}" + (" -src" if self.key["deactivate_source"] else "")


@dataclass(kw_only=True)
class SteerResult(Result):
    """The dev grid and the chosen conditions on the test split, the unsteered model on both, every
    row, and the per-language means the values came from."""

    command: ClassVar[str] = "steer"
    SUMMARY: ClassVar[str] = names.STEER
    SETTINGS: ClassVar[tuple[str, ...]] = ("source", "target")
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("rows", "means")

    model: str
    source: str
    target: str
    seed: int
    normal: dict[str, dict[str, Estimate]]  # split -> metric -> estimate
    grid: list[Cell]  # dev split, every alpha
    chosen: list[Cell]  # test split, the alpha chosen on dev
    rows: list[dict]
    means: LanguageMeans
    settings: dict[str, Any]
    timings: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """The generic summary with the note on the split after the target."""
        data = super().to_json()
        return dict(list(data.items())[:4]) | {"split_note": SPLIT_NOTE} | data

    def write_files(self, out: Path) -> list[str]:
        write_jsonl(out / names.STEER_ROWS, self.rows)
        write_json(out / names.STEER, self.to_json())
        curves: dict[str, dict[str, list[tuple[float, Estimate]]]] = {}
        for cell in self.grid:
            for arm, values in (("", cell.steered), (" random", cell.random)):
                curve = curves.setdefault(cell.label + arm, {})
                for metric in ("target", "loglik"):
                    curve.setdefault(metric, []).append((cell.key["alpha"], values[metric]))
        plots.steer_curves(
            curves, {m: self.normal["dev"][m] for m in ("target", "loglik")}, self.target, out / names.STEER_FIGURE
        )
        return [names.STEER_ROWS, names.STEER, names.STEER_FIGURE, *self.means.save(out)]

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {"rows": read_jsonl(out / names.STEER_ROWS), "means": LanguageMeans.load(out)}

    def headline(self) -> dict[str, Any]:
        """What the study records of the step: the chosen conditions on the test split and the prompts."""
        return {"chosen": [cell.to_json() for cell in self.chosen], "n_prompts": self.settings["n_prompts"]}

    def summary_lines(self) -> list[str]:
        n = self.settings["n_prompts"]
        lines = [f"{SPLIT_NOTE} ({n['dev']} dev, {n['test']} test prompts); {self.source} -> {self.target}"]
        normal = self.normal["test"]
        lines.append(f"{'normal':>24}: target {describe(normal['target'])}; loglik {describe(normal['loglik'])}")
        for cell in self.chosen:
            s = cell.steered
            lines.append(
                f"{cell.label:>24} a={cell.key['alpha']:g}: target {describe(s['target'])}; source "
                f"{s['source'].text()}; blank {s['blank'].text()}; loglik {s['loglik'].text()}; repeat "
                f"{s['repeat'].text()}; random target {cell.random['target'].text()}"
            )
        return lines


def split_prompts(prompts: Sequence[str], dev_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded permutation of the prompts cut into dev (at least one) and test (at least one)."""
    if len(prompts) < 2:
        raise InputError(f"steering needs at least 2 prompts (a dev and a test split), got {len(prompts)}")
    order = np.random.default_rng(seed).permutation(len(prompts))
    cut = min(max(1, round(dev_fraction * len(prompts))), len(prompts) - 1)
    return [prompts[k] for k in order[:cut]], [prompts[k] for k in order[cut:]]


def run(
    lm: LoadedModel,
    prompts: Sequence[str],
    sets: Sequence[NeuronSet],
    means: LanguageMeans,
    config: SteerConfig,
    source: str,
    target: str,
    sources: Sequence[NeuronSet] = (),
    progress: bool = False,
) -> SteerResult:
    """Steer `prompts` (in `source`) toward `target` with each of `sets` (with `sources`, the source
    language's sets in the same order, deactivated too when `config.deactivate_source`)."""
    start = time.perf_counter()
    if config.deactivate_source and len(sources) != len(sets):
        raise InputError(f"deactivating the source set needs one source set per neuron set ({len(sets)})")
    identity = lm.identity()
    if means.model is not None and identity is not None and means.model.key != identity.key:
        raise InputError(f"the means belong to another model (identity {means.model.key}), not to '{lm.name}'")
    for neuron_set in [*sets, *sources]:
        lm.check_neurons(neuron_set)
        neuron_set.check_top_k(config.top_k)
    labels = [s.name for s in sets]
    if len(set(labels)) != len(labels):
        raise InputError(f"two neuron sets share a name ({', '.join(labels)}); give each set once")
    values = {method: method_values(method, means, target) for method in config.methods}  # fails before generating
    dev, test = split_prompts(prompts, config.dev_fraction, config.seed)
    identifier = identifier_for(None if config.langid_langs is None else (*config.langid_langs, target), source)
    seeds = [config.seed + s for s in range(config.baseline_seeds)]

    def arms(alphas: Mapping[tuple[str, str, bool], Sequence[float]] | None) -> list[Arm]:
        out = [Arm("normal")]
        for k, neuron_set in enumerate(sets):
            switches = (False, True) if config.deactivate_source else (False,)
            for method in config.methods:
                for off in switches:
                    deactivated = sources[k].neurons(config.top_k) if off else []
                    key = (neuron_set.name, method.value, off)
                    grid = dict.fromkeys(config.alphas) if alphas is None else alphas[key]
                    out += [
                        build_arm(
                            neuron_set.name,
                            neuron_set.neurons(config.top_k),
                            method,
                            alpha,
                            values[method],
                            deactivated,
                            lm.mlp_width,
                            seeds,
                            config.positions.value,
                        )
                        for alpha in grid
                    ]
        return out

    langs = (target, source)
    args = (identifier, langs)
    step = (config.max_new_tokens, config.batch_size)
    dev_rows = measure(lm, dev, arms(None), *args, "dev", *step, progress)
    dev_normal, grid = summarise(dev_rows, config)
    best = {key: [alpha] for key, alpha in choose(grid).items()}
    test_rows = measure(lm, test, arms(best), *args, "test", *step, progress)
    test_normal, chosen = summarise(test_rows, config)
    settings = {
        "sets": [s.name for s in sets],
        "source_sets": [s.name for s in sources] if config.deactivate_source else None,
        **config.model_dump(mode="json", exclude={"seed"}),
        "n_prompts": {"dev": len(dev), "test": len(test)},
        "langid": identifier.settings(),
    }
    return SteerResult(
        model=lm.name,
        source=source,
        target=target,
        seed=config.seed,
        normal={"dev": dev_normal, "test": test_normal},
        grid=grid,
        chosen=chosen,
        rows=dev_rows + test_rows,
        means=means,
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )


def summarise(rows: Sequence[dict], config: SteerConfig) -> tuple[dict[str, Estimate], list[Cell]]:
    """The unsteered model's estimates and one Cell per arm, in the rows' order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["method"], row["alpha"], row["deactivate_source"]), []).append(row)
    normal: dict[str, Estimate] = {}
    cells = []
    for (name, method, alpha, off), members in groups.items():
        steered, random = arm_estimates(members, config.bootstrap, config.seed)
        if random is None:
            normal = steered
            continue
        key = {"set": name, "method": method, "alpha": alpha, "deactivate_source": off}
        cells.append(Cell(key, steered, random))
    return normal, cells


def choose(grid: Sequence[Cell]) -> dict[tuple[str, str, bool], float]:
    """Per (set, method, deactivate_source), the alpha of the dev grid with the highest target share,
    then the highest log-likelihood, then the smallest |alpha|."""
    best: dict[tuple[str, str, bool], tuple[tuple[float, float, float], float]] = {}
    for cell in grid:
        key = (cell.key["set"], cell.key["method"], cell.key["deactivate_source"])
        loglik = cell.steered["loglik"].value
        rank = (cell.steered["target"].value, loglik if np.isfinite(loglik) else -np.inf, -abs(cell.key["alpha"]))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, cell.key["alpha"])
    return {key: alpha for key, (_, alpha) in best.items()}
