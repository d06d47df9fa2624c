"""What the downstream analyses share about their units (questions, prompts, sentences): the row
fields recording each unit's random draw, a run in parts whose per-unit interventions travel with
their units, and the one-line text of an estimate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from transfer_neurons.analyses.estimate import Say, with_estimate
from transfer_neurons.hooks.interventions import Applied, Condition, Conditions, Intervention, RandomBaseline, rows_of
from transfer_neurons.metrics.uncertainty import Estimate

Out = TypeVar("Out")


def compared(conditions: Conditions) -> tuple[Intervention | None, RandomBaseline | None]:
    """The deactivated set and the random baseline of a run's conditions (None without a neuron set)."""
    deactivated, random = conditions.get("deactivated"), conditions.get("random")
    assert deactivated is None or isinstance(deactivated, Intervention)
    assert random is None or isinstance(random, RandomBaseline)
    return deactivated, random


def seed_fields(condition: Condition, n: int) -> list[dict[str, int]]:
    """Per row of the n units under a condition (`replicated` order), what it records of its draw:
    `{"seed": s}` under a random baseline (S x n rows, draw by draw), nothing otherwise (n rows)."""
    if not isinstance(condition, RandomBaseline):
        return [{} for _ in range(n)]
    return [{"seed": seed} for seed in condition.seeds for _ in range(n)]


def in_parts(
    step: Callable[..., Out],
    prompts: Sequence[str],
    intervention: Applied,
    batch_size: int,
    n_conditions: int,
    say: Say | None,
) -> list[Out]:
    """`with_estimate` over prompts that may each carry their own intervention: every part calls
    `step(its prompts, intervention=their interventions)`, the per-prompt list sliced with the prompts."""
    return with_estimate(
        lambda index: step([prompts[i] for i in index], intervention=rows_of(intervention, index)),
        range(len(prompts)),
        batch_size,
        n_conditions,
        say,
    )


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
