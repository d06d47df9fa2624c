"""Generative QA under deactivation (docs/method.md section 7): greedy answers, token F1 / exact match."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

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
from transfer_neurons.data.qa import MAX_SHOTS, QAItem, qa_prompt, template_lang
from transfer_neurons.hooks.generation import EstimatingBar, generate
from transfer_neurons.hooks.interventions import Condition, Conditions, for_units, replicated
from transfer_neurons.metrics.qa import best_f1, exact_match, first_line
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.model.loading import LoadedModel

TASK = "qa"


class QAConfig(TaskConfig):
    """Settings of a QA run (the defaults of the `qa` command); split and max_questions choose the items."""

    positions: Positions = Field(Positions.prompt, description="Where to deactivate (the paper: prompt).")
    shots: int = Field(2, ge=0, le=MAX_SHOTS, description="Worked examples in the prompt.")
    max_new_tokens: int = Field(16, ge=1, description="Answer budget in tokens.")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    split: str = Field("train", description="Split of a hub dataset.")
    max_questions: int | None = max_items_field("questions")


@dataclass(frozen=True)
class QAScores(JsonValue):
    """Mean token F1 and exact match of one condition over its n questions, each with its bootstrap
    interval over the questions (and, deactivated, its paired difference from the random baseline)."""

    n: int
    f1: Estimate
    em: Estimate


@dataclass(kw_only=True)
class QAResult(DownstreamResult):
    """Per-question rows and per-condition scores of a QA run, with the interventions it compared."""

    command: ClassVar[str] = "qa"
    TASK: ClassVar[str] = TASK
    SUMMARY: ClassVar[str] = names.summary(TASK)
    UNITS: ClassVar[str] = "questions"

    conditions: dict[str, QAScores]

    n_questions = DownstreamResult.n_units

    def metric(self) -> dict[str, Estimate]:
        """Token F1."""
        return {name: s.f1 for name, s in self.conditions.items()}

    def plot(self, path: Path) -> None:
        bars = {name: {"F1": s.f1, "exact match": s.em} for name, s in self.conditions.items()}
        plots.grouped_bars(
            {name: {metric: e.value for metric, e in metrics.items()} for name, metrics in bars.items()},
            f"QA ({self.lang})",
            "score",
            path,
            (0, 1),
            errors={name: {m: e.ci for m, e in metrics.items() if e.ci is not None} for name, metrics in bars.items()},
            n_label=f"n = {self.n_questions} questions",
        )

    def summary_lines(self) -> list[str]:
        return [
            f"{name:>11}: F1 {describe(s.f1)}; exact match {describe(s.em)} ({s.n} questions)"
            for name, s in self.conditions.items()
        ]


def run(
    lm: LoadedModel, items: Sequence[QAItem], neurons: NeuronSet | None, config: QAConfig, progress: bool = False
) -> QAResult:
    """QA of `items` (questions in one language) normally and, given a neuron set, with its top-k
    deactivated and with a random baseline (the command line and the study call this)."""
    lang = single_language(items, "QA")

    def measure(conditions: Conditions) -> tuple[list[dict], dict[str, Any]]:
        rows = qa_study(lm, items, conditions, config.shots, config.max_new_tokens, config.batch_size, progress)
        f1, em = (row_estimates(rows, metric, conditions, config) for metric in ("f1", "em"))
        return rows, {"conditions": {name: QAScores(len(items), f1[name], em[name]) for name in conditions}}

    def settings() -> dict[str, Any]:
        return {
            "shots": config.shots,
            "max_new_tokens": config.max_new_tokens,
            "template": template_lang(lang),
            "split": config.split,
            "max_questions": config.max_questions,
        }

    return controlled_run(QAResult, lm, lang, neurons, config, measure, settings, {"batch_size": config.batch_size})


def qa_study(
    lm: LoadedModel,
    items: Sequence[QAItem],
    conditions: Conditions,
    shots: int = 2,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict]:
    """Greedy answers under each condition, scored by token F1 / exact match (max over aliases); under
    a random baseline each question runs under every draw (its rows record the draw's `seed`)."""
    prompts = [qa_prompt(item.question, item.lang, shots) for item in items]

    def answers(condition: Condition, runs: list[str], bar: EstimatingBar) -> list[str]:
        return generate(lm, runs, for_units(condition, len(prompts)), max_new_tokens, batch_size, ["\n"], bar)

    outputs = per_condition(conditions, prompts, "QA", progress, answers)
    rows = []
    for name, condition in conditions.items():
        units = replicated(condition, items)
        for item, output, seed in zip(units, outputs[name], seed_fields(condition, len(items)), strict=True):
            prediction = first_line(output)
            rows.append(
                {
                    "condition": name,
                    **seed,
                    "id": item.id,
                    "lang": item.lang,
                    "question": item.question,
                    "answers": list(item.answers),
                    "output": output,
                    "prediction": prediction,
                    "f1": best_f1(prediction, item.answers, item.lang),
                    "em": exact_match(prediction, item.answers, item.lang),
                }
            )
    return rows
