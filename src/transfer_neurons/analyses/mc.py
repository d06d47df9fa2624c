"""Multiple choice under deactivation (DESIGN.md 3.6): option-letter log-likelihoods, accuracy."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, ControlledResult, conditions_for, summarize_rows
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.data.mc import LETTERS, MCItem, letter_token_ids, mc_prompt, template_lang
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import next_token_logprobs
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.mc import choose
from transfer_neurons.model.loading import LoadedModel

TASK = "mc"


class MCConfig(ControlConfig):
    """Settings of a multiple-choice run (the defaults of the `mc` command); split and max_questions
    choose the items."""

    top_k: int = Field(1000, ge=1, description="Deactivate the top-k neurons of the set.")
    positions: Positions = Field(Positions.prompt, description="Where to deactivate (the paper: prompt).")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    split: str = Field("test", description="Split of a hub dataset.")
    max_questions: int | None = Field(None, ge=1, description="Use at most this many questions.")


@dataclass(frozen=True)
class MCScores:
    """Accuracy of one condition over its n questions."""

    accuracy: float
    n: int


@dataclass(kw_only=True)
class MCResult(ControlledResult):
    """Per-question rows and per-condition accuracy of a multiple-choice run, the chance level
    (mean of 1 / options) and the interventions it compared."""

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
        return [
            f"{name:>11}: accuracy {s.accuracy:.3f} ({s.n} questions, chance {self.chance:.3f})"
            for name, s in self.conditions.items()
        ]


def run(lm: LoadedModel, items: Sequence[MCItem], neurons: NeuronSet | None, config: MCConfig) -> MCResult:
    """Multiple choice on `items` (questions in one language) normally and, given a neuron set, with
    its top-k deactivated and with a random baseline (the command line and the study call this)."""
    langs = sorted({item.lang for item in items})
    if len(langs) != 1:
        raise InputError(f"multiple choice needs questions in one language, got {', '.join(langs) or 'none'}")
    lang = langs[0]
    start = time.perf_counter()
    conditions = conditions_for(lm, neurons, config, config.positions)
    rows = mc_study(lm, items, conditions, config.batch_size)
    n_options = [len(item.options) for item in items]
    scores = {name: MCScores(s["correct"], int(s["n"])) for name, s in summarize_rows(rows, ("correct",)).items()}
    settings = {
        "top_k": config.top_k if neurons else None,
        "positions": config.positions.value,
        "template": template_lang(lang),
        "letter_form": letter_token_ids(lm.tokenizer, max(n_options))[1],
        "split": config.split,
        "max_questions": config.max_questions,
        "baseline": config.baseline.value,
        "batch_size": config.batch_size,
    }
    return MCResult(
        model=lm.name,
        lang=lang,
        seed=config.seed,
        chance=sum(1 / n for n in n_options) / len(items),
        conditions=scores,
        rows=rows,
        deactivated=conditions.get("deactivated"),
        random=conditions.get("random"),
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )


def mc_study(lm: LoadedModel, items: Sequence[MCItem], conditions: Conditions, batch_size: int = 8) -> list[dict]:
    """Option-letter log-likelihoods after each prompt under each condition; the argmax is the choice."""
    n_options = [len(item.options) for item in items]
    token_ids, _ = letter_token_ids(lm.tokenizer, max(n_options))
    prompts = [mc_prompt(item) for item in items]
    rows = []
    for name, intervention in conditions.items():
        logprobs = next_token_logprobs(lm, prompts, token_ids, intervention, batch_size)
        for item, row, chosen in zip(items, logprobs, choose(logprobs, n_options), strict=True):
            rows.append(
                {
                    "condition": name,
                    "id": item.id,
                    "lang": item.lang,
                    "answer": LETTERS[item.answer],
                    "predicted": LETTERS[chosen],
                    "correct": chosen == item.answer,
                    "logprobs": [round(float(x), 5) for x in row[: len(item.options)]],
                }
            )
    return rows
