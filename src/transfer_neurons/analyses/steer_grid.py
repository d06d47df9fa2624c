"""The conditions of a steering run and what each measures (docs/method.md sections 4 and 7,
"Steering"): per neuron set, method, alpha and with or without the source language's set
deactivated, the steered set and random sets of the same per-layer shape; every condition's
continuations in one list of rows with per-row interventions, so conditions share batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from transfer_neurons.analyses.means import LanguageMeans
from transfer_neurons.hooks.generation import EstimatingBar, continuation_logliks, generate
from transfer_neurons.hooks.interventions import Intervention, random_baseline
from transfer_neurons.metrics.fluency import repeated_ngram_rate
from transfer_neurons.metrics.langid import NONE, UNDECODABLE, LanguageID, undecodable
from transfer_neurons.metrics.uncertainty import Estimate, compare_to_draws, mean_estimate
from transfer_neurons.model.loading import LoadedModel

CATEGORIES = ("target", "source", "other", "blank")  # blank: no letters, or bytes that do not decode
METRICS = (*CATEGORIES, "loglik", "repeat")
Neuron = tuple[int, int]


class SteerMethod(StrEnum):
    """`add`: a + alpha mean:T; `set`: alpha mean:T in place of a; `diffmean`: a + alpha diffmean:T;
    `scale`: alpha a (T the target language)."""

    add = "add"
    set = "set"
    diffmean = "diffmean"
    scale = "scale"


def steering(
    neurons: Sequence[Neuron],
    method: SteerMethod,
    alpha: float,
    values: torch.Tensor | None,
    deactivated: Sequence[Neuron] = (),
    positions: str = "all",
) -> Intervention:
    """The intervention of `method` at `alpha` on `neurons` (`values` [L, m]: the per-neuron values of
    mean:T or diffmean:T; unused by scale), with `deactivated` (the source language's set) at factor 0
    where it does not overlap `neurons`."""
    factors: list[tuple[int, int, float]] = []
    shifts: list[tuple[int, int, float]] = []
    for layer, neuron in neurons:
        if method == SteerMethod.scale:
            factors.append((layer, neuron, alpha))
            continue
        assert values is not None
        shifts.append((layer, neuron, alpha * float(values[layer, neuron])))
        if method == SteerMethod.set:
            factors.append((layer, neuron, 0.0))
    steered = set(neurons)
    factors += [(layer, neuron, 0.0) for layer, neuron in deactivated if (layer, neuron) not in steered]
    return Intervention(tuple(sorted(factors)), positions, shifts=tuple(sorted(shifts)))


def method_values(method: SteerMethod, means: LanguageMeans, target: str) -> torch.Tensor | None:
    """The per-neuron values a method adds or sets: mean:T (add, set), diffmean:T, none for scale."""
    if method == SteerMethod.scale:
        return None
    return means.values(f"{'diffmean' if method == SteerMethod.diffmean else 'mean'}:{target}")


@dataclass(frozen=True)
class Arm:
    """One condition of the grid: a neuron set steered by `method` at `alpha` (and the source set
    deactivated when `deactivate_source`), with the random draws of the same per-layer shape steered
    alike; the unsteered model for `set` 'normal'."""

    set: str
    method: str = ""
    alpha: float = 0.0
    deactivate_source: bool = False
    steered: Intervention | None = None
    draws: tuple[Intervention, ...] = ()
    seeds: tuple[int, ...] = ()

    def key(self) -> dict[str, Any]:
        off = self.deactivate_source
        return {"set": self.set, "method": self.method, "alpha": self.alpha, "deactivate_source": off}

    def variants(self) -> list[tuple[str, Intervention | None, int | None]]:
        """(arm, intervention, seed) of each run of the prompts: the steered set, then each draw."""
        if self.set == "normal":
            return [("normal", None, None)]
        return [("steered", self.steered, None)] + [
            ("random", draw, seed) for draw, seed in zip(self.draws, self.seeds, strict=True)
        ]


def build_arm(
    name: str,
    neurons: Sequence[Neuron],
    method: SteerMethod,
    alpha: float,
    values: torch.Tensor | None,
    deactivated: Sequence[Neuron],
    width: int,
    seeds: Sequence[int],
    positions: str,
) -> Arm:
    """An arm of the grid: the random draws are drawn per layer (`random_baseline`) outside `neurons`,
    one per seed, and steered with their own neurons' values."""
    shape = Intervention.of(neurons, positions=positions)
    draws = tuple(
        steering(random_baseline(shape, width, seed=s).pairs(), method, alpha, values, deactivated, positions)
        for s in seeds
    )
    steered = steering(neurons, method, alpha, values, deactivated, positions)
    return Arm(name, method.value, alpha, bool(deactivated), steered, draws, tuple(seeds))


def measure(
    lm: LoadedModel,
    prompts: Sequence[str],
    arms: Sequence[Arm],
    identifier: LanguageID,
    langs: tuple[str, str],
    split: str,
    max_new_tokens: int,
    batch_size: int,
    progress: bool = False,
) -> list[dict]:
    """One generation per prompt and run of every arm, all in one list with per-row interventions;
    per row its language category among (target, source) of `langs`, the unsteered model's mean
    log-likelihood of the continuation and its repeated n-gram rate."""
    runs: list[str] = []
    applied: list[Intervention | None] = []
    fields: list[dict[str, Any]] = []
    for arm in arms:
        for name, intervention, seed in arm.variants():
            runs += prompts
            applied += [intervention] * len(prompts)
            extra = {} if seed is None else {"seed": seed}
            fields += [{"split": split, **arm.key(), "arm": name, **extra}] * len(prompts)
    bar = EstimatingBar({split: runs}, f"steered continuations ({split})", progress)
    outputs = generate(lm, runs, applied, max_new_tokens, batch_size, bar=bar)
    bar.close()
    logliks = continuation_logliks(lm, runs, outputs, batch_size)
    rows = []
    for prompt, output, loglik, field in zip(runs, outputs, logliks, fields, strict=True):
        language = UNDECODABLE if undecodable(output) else identifier.identify(output.strip())
        ids = lm.tokenizer(output, add_special_tokens=False)["input_ids"]
        rows.append(
            {
                **field,
                "prompt": prompt,
                "output": output,
                "language": language,
                "category": category(language, langs),
                "loglik": None if np.isnan(loglik) else loglik,
                "repeat": repeated_ngram_rate(ids),
            }
        )
    return rows


def category(language: str, langs: tuple[str, str]) -> str:
    """target, source, blank (no letters or undecodable) or other."""
    if language in (NONE, UNDECODABLE):
        return "blank"
    return {langs[0]: "target", langs[1]: "source"}.get(language, "other")


def unit_values(rows: Sequence[dict], metric: str) -> np.ndarray:
    """Per row, the metric's value: 1/0 for a category, the log-likelihood (NaN for none), the rate."""
    if metric in CATEGORIES:
        return np.array([float(row["category"] == metric) for row in rows])
    return np.array([np.nan if row[metric] is None else float(row[metric]) for row in rows])


def arm_estimates(
    rows: Sequence[dict], n_boot: int, seed: int
) -> tuple[dict[str, Estimate], dict[str, Estimate] | None]:
    """The rows of one arm (in `measure`'s order) summarised per metric: the steered (or normal) mean
    with its interval (Wilson for shares, BCa for means) and, with random draws, its difference from
    them (the draws a random effect, `compare_to_draws`) and the draws' mean. Units without a
    log-likelihood (empty continuations) drop out of that metric in every run of the arm."""
    main = [row for row in rows if row["arm"] in ("steered", "normal")]
    drawn = [row for row in rows if row["arm"] == "random"]
    if not drawn:
        return {m: mean_estimate(_finite(unit_values(main, m)), n_boot, seed) for m in METRICS}, None
    steered, random = {}, {}
    for metric in METRICS:
        y = unit_values(main, metric)
        table = unit_values(drawn, metric).reshape(-1, len(y))
        keep = np.isfinite(y) & np.isfinite(table).all(0)
        if not keep.any():  # no continuation with tokens under every run
            steered[metric] = random[metric] = Estimate(float("nan"))
            continue
        seeds = sorted({row["seed"] for row in drawn}, key=[row["seed"] for row in drawn].index)
        steered[metric], random[metric] = compare_to_draws(y[keep], table[:, keep], seeds, n_boot, seed)
    return steered, random


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]
