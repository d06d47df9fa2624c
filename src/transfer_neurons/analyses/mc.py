"""Multiple choice under deactivation (docs/method.md section 7): option-letter log-likelihoods, accuracy, and
what it takes to read an accuracy honestly: the letters chosen and whether it is within noise of
chance. Scoring 'letter' takes the most likely letter; 'cyclic' averages each option's letter
log-probability over the cyclic shifts of the option order, so a fixed letter preference cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from transfer_neurons.analyses.base import (
    DownstreamResult,
    TaskConfig,
    controlled_run,
    max_items_field,
    row_estimates,
    single_language,
)
from transfer_neurons.analyses.units import describe, per_condition, seed_fields
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.codec import JsonValue
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.data.mc import LETTERS, MCItem, letter_token_ids, mc_prompt, shifted_item, template_lang
from transfer_neurons.hooks.generation import EstimatingBar, next_token_logprobs
from transfer_neurons.hooks.interventions import Applied, Condition, Conditions, Intervention, for_units, replicated
from transfer_neurons.metrics.mc import choose, cyclic_scores, letter_counts, near_chance, wilson_interval
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.model.loading import LoadedModel

TASK = "mc"


class Scoring(StrEnum):
    """How the choice is read: the most likely option letter, or the option most likely on average
    over the cyclic shifts of the option order (each option at every letter once; n times the prompts)."""

    letter = "letter"
    cyclic = "cyclic"


class MCConfig(TaskConfig):
    """Settings of a multiple-choice run (the defaults of the `mc` command); split and max_questions
    choose the items."""

    positions: Positions = Field(Positions.prompt, description="Where to deactivate (the paper: prompt).")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    split: str = Field("test", description="Split of a hub dataset.")
    max_questions: int | None = max_items_field("questions")
    scoring: Scoring = Field(
        Scoring.letter,
        description="'letter': the option letter with the highest log-likelihood; 'cyclic': each option's letter "
        "log-likelihood averaged over the n cyclic shifts of the option order (a fixed letter preference cancels; "
        "n times the prompts).",
    )


@dataclass(frozen=True)
class MCScores(JsonValue):
    """Accuracy of one condition over its n questions (bootstrap interval over the questions and,
    deactivated, the paired difference from the random baseline), its 95 % Wilson interval, whether
    the chance level lies inside that interval (within noise of chance), and how often each letter
    was chosen."""

    accuracy: Estimate
    n: int
    wilson: tuple[float, float]
    near_chance: bool
    letters: dict[str, int]  # option letter -> times chosen

    @classmethod
    def of(
        cls,
        accuracy: Estimate,
        correct: Sequence[bool],
        predicted: Sequence[str],
        letters: str,
        chance: float,
        draws: int = 1,
    ) -> MCScores:
        """The scores of one condition's rows (correctness and chosen letter per question, `draws` times
        for a random baseline), given the estimate of its accuracy: n questions, the Wilson interval and
        the chance check of the hits per draw, the letters chosen over every draw."""
        n, hits = len(correct) // draws, round(sum(correct) / draws)
        wilson = wilson_interval(hits, n)
        return cls(accuracy, n, wilson, near_chance(hits, n, chance), letter_counts(predicted, letters))


@dataclass(kw_only=True)
class MCResult(DownstreamResult):
    """Per-question rows and per-condition scores of a multiple-choice run (accuracy, its interval
    and the letters chosen), the chance level (mean of 1 / options) and the interventions it compared."""

    command: ClassVar[str] = "mc"
    TASK: ClassVar[str] = TASK
    SUMMARY: ClassVar[str] = names.summary(TASK)
    UNITS: ClassVar[str] = "questions"

    chance: float
    conditions: dict[str, MCScores]

    n_questions = DownstreamResult.n_units

    def metric(self) -> dict[str, Estimate]:
        """Accuracy."""
        return {name: s.accuracy for name, s in self.conditions.items()}

    def plot(self, path: Path) -> None:
        plots.grouped_bars(
            {name: {"accuracy": s.accuracy.value, "chance": self.chance} for name, s in self.conditions.items()},
            f"Multiple choice ({self.lang})",
            "accuracy",
            path,
            (0, 1),
            errors={name: {"accuracy": s.accuracy.ci} for name, s in self.conditions.items() if s.accuracy.ci},
            n_label=f"n = {self.n_questions} questions",
        )

    def summary_lines(self) -> list[str]:
        """Per condition: accuracy with its bootstrap interval (and its difference from random), its
        Wilson interval, chance, the letters chosen; and a line for each condition whose accuracy is
        within noise of chance."""
        lines = []
        for name, s in self.conditions.items():
            letters = ", ".join(f"{letter} {count}" for letter, count in s.letters.items())
            lines.append(
                f"{name:>11}: accuracy {describe(s.accuracy)} (Wilson 95% interval {s.wilson[0]:.3f}-"
                f"{s.wilson[1]:.3f}, {s.n} questions, chance {self.chance:.3f}); letters chosen: {letters}"
            )
        lines += [
            f"{name:>11}: within noise of chance (chance {self.chance:.3f} lies inside the Wilson 95% interval)"
            for name, s in self.conditions.items()
            if s.near_chance
        ]
        return lines


def run(
    lm: LoadedModel, items: Sequence[MCItem], neurons: NeuronSet | None, config: MCConfig, progress: bool = False
) -> MCResult:
    """Multiple choice on `items` (questions in one language) normally and, given a neuron set, with
    its top-k deactivated and with a random baseline (the command line and the study call this)."""
    lang = single_language(items, "multiple choice")
    n_options = [len(item.options) for item in items]
    chance = sum(1 / n for n in n_options) / len(items)

    def measure(conditions: Conditions) -> tuple[list[dict], dict[str, Any]]:
        rows = mc_study(lm, items, conditions, config.batch_size, config.scoring, progress)
        chosen = {name: [row for row in rows if row["condition"] == name] for name in conditions}
        accuracy = row_estimates(rows, "correct", conditions, config)
        scores = {
            name: MCScores.of(
                accuracy[name],
                [row["correct"] for row in chosen[name]],
                [row["predicted"] for row in chosen[name]],
                LETTERS[: max(n_options)],
                chance,
                len(chosen[name]) // len(items),
            )
            for name in conditions
        }
        return rows, {"chance": chance, "conditions": scores}

    def settings() -> dict[str, Any]:
        return {
            "template": template_lang(lang),
            "letter_form": letter_token_ids(lm.tokenizer, max(n_options))[1],
            "split": config.split,
            "max_questions": config.max_questions,
            "scoring": config.scoring.value,
        }

    return controlled_run(MCResult, lm, lang, neurons, config, measure, settings, {"batch_size": config.batch_size})


def mc_study(
    lm: LoadedModel,
    items: Sequence[MCItem],
    conditions: Conditions,
    batch_size: int = 8,
    scoring: Scoring = Scoring.letter,
    progress: bool = False,
) -> list[dict]:
    """Option-letter log-likelihoods after each prompt under each condition; the choice is the argmax
    of the letters ('letter') or of the option scores averaged over the cyclic shifts ('cyclic',
    recorded as `scores`, in the original option order). Under a random baseline each question runs
    under every draw (all its shifted prompts under the same one) and its rows record the draw's `seed`."""
    n_options = [len(item.options) for item in items]
    token_ids, _ = letter_token_ids(lm.tokenizer, max(n_options))
    shifts = [1 if scoring is Scoring.letter else n for n in n_options]
    prompts = [mc_prompt(shifted_item(item, s)) for item, k in zip(items, shifts, strict=True) for s in range(k)]

    def logprobs(condition: Condition, runs: list[str], bar: EstimatingBar) -> torch.Tensor:
        applied = per_prompt(for_units(condition, len(items)), replicated(condition, shifts))
        return next_token_logprobs(lm, runs, token_ids, applied, batch_size, bar)

    every = per_condition(conditions, prompts, "multiple choice", progress, logprobs)
    rows = []
    for name, condition in conditions.items():
        units, counts, options = (
            replicated(condition, items),
            replicated(condition, shifts),
            replicated(condition, n_options),
        )
        blocks = every[name].split(counts)  # per question: [shifts, letters], shift 0 first
        scores = [
            b[0] if scoring is Scoring.letter else cyclic_scores(b[:, :n]) for b, n in zip(blocks, options, strict=True)
        ]
        seeds = seed_fields(condition, len(items))
        for item, block, score, chosen, seed in zip(units, blocks, scores, choose(scores, options), seeds, strict=True):
            row = {
                "condition": name,
                **seed,
                "id": item.id,
                "lang": item.lang,
                "answer": LETTERS[item.answer],
                "predicted": LETTERS[chosen],
                "correct": chosen == item.answer,
                "logprobs": [round(float(x), 5) for x in block[0, : len(item.options)]],
            }
            if scoring is Scoring.cyclic:
                row["scores"] = [round(float(x), 5) for x in score]
            rows.append(row)
    return rows


def per_prompt(per_question: Applied, shifts: Sequence[int]) -> Applied:
    """Each question's intervention repeated for its shifted prompts (one for all rows stays one)."""
    if per_question is None or isinstance(per_question, Intervention):
        return per_question
    return [iv for iv, k in zip(per_question, shifts, strict=True) for _ in range(k)]
