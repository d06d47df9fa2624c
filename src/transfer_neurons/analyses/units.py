"""What the downstream analyses share about their units (questions, prompts, sentences): their runs
under each condition, the row fields recording each unit's random draw, and the one-line text of an
estimate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from transfer_neurons.hooks.generation import EstimatingBar
from transfer_neurons.hooks.interventions import Condition, Conditions, Intervention, RandomBaseline, replicated
from transfer_neurons.metrics.uncertainty import Estimate

T = TypeVar("T")


def compared(conditions: Conditions) -> tuple[Intervention | None, RandomBaseline | None]:
    """The deactivated set and the random baseline of a run's conditions (None without a neuron set)."""
    deactivated, random = conditions.get("deactivated"), conditions.get("random")
    assert deactivated is None or isinstance(deactivated, Intervention)
    assert random is None or isinstance(random, RandomBaseline)
    return deactivated, random


def per_condition(
    conditions: Conditions,
    prompts: Sequence[str],
    desc: str,
    progress: bool,
    compute: Callable[[Condition, list[str], EstimatingBar], T],
) -> dict[str, T]:
    """Per condition, `compute` of its prompts (`replicated`: under a random baseline every prompt
    under every draw), with one bar `desc` over the prompts of every condition."""
    runs = {name: replicated(condition, prompts) for name, condition in conditions.items()}
    bar = EstimatingBar(runs, desc, progress)
    out = {name: compute(condition, runs[name], bar) for name, condition in conditions.items()}
    bar.close()
    return out


def seed_fields(condition: Condition, n: int) -> list[dict[str, int]]:
    """Per row of the n units under a condition (`replicated` order), what it records of its draw:
    `{"seed": s}` under a random baseline (S x n rows, draw by draw), nothing otherwise (n rows)."""
    if not isinstance(condition, RandomBaseline):
        return [{} for _ in range(n)]
    return [{"seed": seed} for seed in condition.seeds for _ in range(n)]


def describe(estimate: Estimate, digits: int = 3) -> str:
    """'0.212 [0.150, 0.280]', plus ', vs random -0.050 [-0.110, 0.010] (p = 0.09)' for a condition
    compared with the random baseline, or ', sd 0.012 over 5 seeds' for a multi-seed random baseline."""
    text = estimate.text(digits)
    effect, p = estimate.effect_vs_random, estimate.p_vs_random
    if effect is not None:
        text += f", vs random {effect.text(digits)}" + ("" if p is None else f" (p = {p:.2g})")
    elif estimate.spread is not None and estimate.per_seed is not None:
        text += f", sd {estimate.spread:.{digits}f} over {len(estimate.per_seed)} seeds"
    return text
