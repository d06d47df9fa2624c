"""Multiple choice under deactivation (DESIGN.md 3.6): option-letter log-likelihoods, accuracy, and
what it takes to read an accuracy honestly: the letters chosen and whether it is within noise of
chance. Scoring 'letter' takes the most likely letter; 'cyclic' averages each option's letter
log-probability over the cyclic shifts of the option order, so a fixed letter preference cancels."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, ControlledResult, conditions_for, single_language
from transfer_neurons.analyses.estimate import Say, with_estimate
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.data.mc import LETTERS, MCItem, letter_token_ids, mc_prompt, shifted_item, template_lang
from transfer_neurons.hooks.generation import next_token_logprobs
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.mc import choose, cyclic_scores, letter_counts, near_chance, wilson_interval
from transfer_neurons.model.loading import LoadedModel

TASK = "mc"


class Scoring(StrEnum):
    """How the choice is read: the most likely option letter, or the option most likely on average
    over the cyclic shifts of the option order (each option at every letter once; n times the prompts)."""

    letter = "letter"
    cyclic = "cyclic"


class MCConfig(ControlConfig):
    """Settings of a multiple-choice run (the defaults of the `mc` command); split and max_questions
    choose the items."""

    top_k: int = Field(1000, ge=1, description="Deactivate the top-k neurons of the set.")
    positions: Positions = Field(Positions.prompt, description="Where to deactivate (the paper: prompt).")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    split: str = Field("test", description="Split of a hub dataset.")
    max_questions: int | None = Field(None, ge=1, description="Use at most this many questions.")
    scoring: Scoring = Field(
        Scoring.letter, description="'letter': the most likely letter; 'cyclic': letter bias cancelled over shifts."
    )


@dataclass(frozen=True)
class MCScores:
    """Accuracy of one condition over its n questions, its 95 % Wilson interval, whether the chance
    level lies inside that interval (within noise of chance), and how often each letter was chosen."""

    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    near_chance: bool
    letters: dict[str, int]  # option letter -> times chosen

    @classmethod
    def of(cls, correct: Sequence[bool], predicted: Sequence[str], letters: str, chance: float) -> MCScores:
        """The scores of one condition's rows: correctness and chosen letter per question."""
        hits, n = sum(correct), len(correct)
        low, high = wilson_interval(hits, n)
        return cls(hits / n, n, low, high, near_chance(hits, n, chance), letter_counts(predicted, letters))


@dataclass(kw_only=True)
class MCResult(ControlledResult):
    """Per-question rows and per-condition scores of a multiple-choice run (accuracy, its interval
    and the letters chosen), the chance level (mean of 1 / options) and the interventions it compared."""

    command: ClassVar[str] = "mc"

    chance: float
    conditions: dict[str, MCScores]
    rows: list[dict]

    @property
    def n_questions(self) -> int:
        """Questions per condition (each condition answers the same ones)."""
        return next(iter(self.conditions.values())).n

    def write_files(self, out: Path) -> list[str]:
        files = [names.rows(TASK), names.summary(TASK), names.figure(TASK)]
        write_jsonl(out / names.rows(TASK), self.rows)
        write_json(
            out / names.summary(TASK),
            {
                **self.header(),
                "chance": self.chance,
                "conditions": {name: asdict(s) for name, s in self.conditions.items()},
            },
        )
        bars = {name: {"accuracy": s.accuracy, "chance": self.chance} for name, s in self.conditions.items()}
        plots.grouped_bars(
            bars,
            f"Multiple choice ({self.lang}, {self.n_questions} questions)",
            "accuracy",
            out / names.figure(TASK),
            (0, 1),
        )
        return files + self.write_interventions(out)

    @classmethod
    def load(cls, out: str | Path) -> MCResult:
        """A multiple-choice folder written by `save` (from the command line, a study or Python)."""
        out = Path(out)
        common = cls.read_common(out)
        summary = read_json(out / names.summary(TASK))
        return cls(
            **common,
            chance=summary["chance"],
            rows=read_jsonl(out / names.rows(TASK)),
            conditions={name: MCScores(**s) for name, s in summary["conditions"].items()},
        )

    def summary_lines(self) -> list[str]:
        """Per condition: accuracy, its 95 % interval, chance, the letters chosen; and a line for each
        condition whose accuracy is within noise of chance."""
        lines = []
        for name, s in self.conditions.items():
            letters = ", ".join(f"{letter} {count}" for letter, count in s.letters.items())
            lines.append(
                f"{name:>11}: accuracy {s.accuracy:.3f} (95% interval {s.ci_low:.3f}-{s.ci_high:.3f}, "
                f"{s.n} questions, chance {self.chance:.3f}); letters chosen: {letters}"
            )
        lines += [
            f"{name:>11}: within noise of chance (chance {self.chance:.3f} lies inside the 95% interval)"
            for name, s in self.conditions.items()
            if s.near_chance
        ]
        return lines


def run(
    lm: LoadedModel, items: Sequence[MCItem], neurons: NeuronSet | None, config: MCConfig, say: Say | None = None
) -> MCResult:
    """Multiple choice on `items` (questions in one language) normally and, given a neuron set, with
    its top-k deactivated and with a random baseline (the command line and the study call this).
    `say` gets one line with a time estimate after the first batch."""
    lang = single_language(items, "multiple choice")
    start = time.perf_counter()
    conditions = conditions_for(lm, neurons, config, config.positions)
    rows = mc_study(lm, items, conditions, config.batch_size, config.scoring, say)
    n_options = [len(item.options) for item in items]
    chance = sum(1 / n for n in n_options) / len(items)
    scores = {}
    for name in conditions:
        chosen = [row for row in rows if row["condition"] == name]
        correct, predicted = [r["correct"] for r in chosen], [r["predicted"] for r in chosen]
        scores[name] = MCScores.of(correct, predicted, LETTERS[: max(n_options)], chance)
    settings = {
        "top_k": config.top_k if neurons else None,
        "positions": config.positions.value,
        "template": template_lang(lang),
        "letter_form": letter_token_ids(lm.tokenizer, max(n_options))[1],
        "split": config.split,
        "max_questions": config.max_questions,
        "scoring": config.scoring.value,
        "baseline": config.baseline.value,
        "batch_size": config.batch_size,
    }
    return MCResult(
        model=lm.name,
        lang=lang,
        seed=config.seed,
        chance=chance,
        conditions=scores,
        rows=rows,
        deactivated=conditions.get("deactivated"),
        random=conditions.get("random"),
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )


def mc_study(
    lm: LoadedModel,
    items: Sequence[MCItem],
    conditions: Conditions,
    batch_size: int = 8,
    scoring: Scoring = Scoring.letter,
    say: Say | None = None,
) -> list[dict]:
    """Option-letter log-likelihoods after each prompt under each condition; the choice is the argmax
    of the letters ('letter') or of the option scores averaged over the cyclic shifts ('cyclic',
    recorded as `scores`, in the original option order); `say` gets a time estimate after the first batch."""
    n_options = [len(item.options) for item in items]
    token_ids, _ = letter_token_ids(lm.tokenizer, max(n_options))
    shifts = [1 if scoring is Scoring.letter else n for n in n_options]
    prompts = [mc_prompt(shifted_item(item, s)) for item, k in zip(items, shifts, strict=True) for s in range(k)]
    rows = []
    for k, (name, intervention) in enumerate(conditions.items()):
        step = partial(next_token_logprobs, lm, token_ids=token_ids, intervention=intervention, batch_size=batch_size)
        logprobs = torch.cat(with_estimate(step, prompts, batch_size, len(conditions), say if k == 0 else None))
        blocks = logprobs.split(shifts)  # per question: [shifts, letters], shift 0 first
        scores = [
            b[0] if scoring is Scoring.letter else cyclic_scores(b[:, :n])
            for b, n in zip(blocks, n_options, strict=True)
        ]
        for item, block, score, chosen in zip(items, blocks, scores, choose(scores, n_options), strict=True):
            row = {
                "condition": name,
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
