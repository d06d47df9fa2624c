"""Language of greedy continuations under deactivation (docs/method.md section 7): per condition, the share of
outputs in each language category, with its bootstrap interval over the prompts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from transfer_neurons.analyses.base import (
    DownstreamResult,
    TaskConfig,
    condition_estimates,
    controlled_run,
    max_items_field,
)
from transfer_neurons.analyses.units import describe, per_condition, seed_fields
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.hooks.generation import EstimatingBar, generate
from transfer_neurons.hooks.interventions import Condition, Conditions, for_units, replicated
from transfer_neurons.metrics.langid import NONE, STUDY_LANGS, UNDECODABLE, LanguageID, undecodable
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.model.loading import LoadedModel

TASK = "output_lang"
OTHER = "other"  # every label outside the categories


def categories(lang: str) -> list[str]:
    """The output categories of prompts in `lang`: the prompt language, English, no letters ('none'),
    bytes that do not decode ('undecodable'), other languages ('other': every other label)."""
    return list(dict.fromkeys([lang, "en", NONE, UNDECODABLE, OTHER]))


def identifier_for(langs: Sequence[str] | None, lang: str) -> LanguageID:
    """The identifier choosing among `langs`, `lang` and English (None: every language py3langid knows)."""
    return LanguageID(None if langs is None else [*langs, lang, "en"])


class OutputLangConfig(TaskConfig):
    """Settings of an output-language run (the defaults of the `output-lang` command); max_prompts
    chooses the prompts."""

    positions: Positions = Field(Positions.all, description="Where to deactivate; 'all' includes the generated tokens.")
    max_new_tokens: int = Field(24, ge=1, description="Tokens to generate per prompt.")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    max_prompts: int | None = max_items_field("prompts")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS,
        description="Languages the identifier chooses among (plus the prompt language and English); "
        "'all' (None) for every language py3langid knows.",
    )


@dataclass(kw_only=True)
class OutputLangResult(DownstreamResult):
    """Continuations with their identified language (rows) and, per condition, the share of outputs
    in the prompt language, English, none (no letters), undecodable (bytes that do not decode, U+FFFD)
    and other languages, each an estimate over the prompts (deactivated: paired vs random)."""

    command: ClassVar[str] = "output-lang"
    TASK: ClassVar[str] = TASK
    SUMMARY: ClassVar[str] = names.summary(TASK)
    UNITS: ClassVar[str] = "prompts"

    conditions: dict[str, dict[str, Estimate]]  # condition -> language label -> share of outputs

    n_prompts = DownstreamResult.n_units

    def metric(self) -> dict[str, Estimate]:
        """The share of outputs in the prompt language."""
        return {name: shares[self.lang] for name, shares in self.conditions.items()}

    def plot(self, path: Path) -> None:
        plots.grouped_bars(
            {name: {label: e.value for label, e in v.items()} for name, v in self.conditions.items()},
            f"Language of continuations of {self.lang} prompts",
            "share of outputs",
            path,
            (0, 1),
            errors={name: {k: e.ci for k, e in v.items() if e.ci is not None} for name, v in self.conditions.items()},
            n_label=f"n = {self.n_prompts} prompts",
        )

    def summary_lines(self) -> list[str]:
        return [
            f"{name:>11}: "
            + "; ".join(f"{label} {describe(e)}" for label, e in values.items())
            + f" ({self.n_prompts} prompts)"
            for name, values in self.conditions.items()
        ]


def run(
    lm: LoadedModel,
    prompts: Sequence[str],
    neurons: NeuronSet | None,
    config: OutputLangConfig,
    lang: str,
    progress: bool = False,
) -> OutputLangResult:
    """Continuations of `prompts` (in `lang`) normally and, given a neuron set, with its top-k
    deactivated and with a random baseline (the command line and the study call this)."""
    identifier = identifier_for(config.langid_langs, lang)

    def measure(conditions: Conditions) -> tuple[list[dict], dict[str, Any]]:
        rows = output_language_study(
            lm, prompts, conditions, identifier, lang, config.max_new_tokens, config.batch_size, progress
        )
        return rows, {"conditions": share_estimates(rows, conditions, lang, config.bootstrap, config.seed)}

    def settings() -> dict[str, Any]:
        return {"max_new_tokens": config.max_new_tokens, "n_prompts": len(prompts)}

    tail = {"langid": identifier.settings(), "batch_size": config.batch_size}
    return controlled_run(OutputLangResult, lm, lang, neurons, config, measure, settings, tail)


def output_language_study(
    lm: LoadedModel,
    prompts: Sequence[str],
    conditions: Conditions,
    identifier: LanguageID,
    lang: str,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict]:
    """Greedy continuations under each condition and their identified language (`language`: `lang`,
    'en', another language, 'none' without letters, or 'undecodable' with bytes that do not decode,
    see `metrics.langid.undecodable`; identified no further), one row per prompt and condition. Under a
    random baseline each prompt runs under every draw (its rows record the draw's `seed`)."""

    def continuations(condition: Condition, runs: list[str], bar: EstimatingBar) -> list[str]:
        return generate(lm, runs, for_units(condition, len(prompts)), max_new_tokens, batch_size, bar=bar)

    every = per_condition(conditions, prompts, f"continuations ({lang})", progress, continuations)
    rows = []
    for name, condition in conditions.items():
        runs, outputs = replicated(condition, prompts), every[name]
        labels = [UNDECODABLE if undecodable(o) else identifier.identify(o.strip()) for o in outputs]
        seeds = seed_fields(condition, len(prompts))
        rows += [
            {"condition": name, **seed, "prompt": p, "output": o, "language": label}
            for p, o, label, seed in zip(runs, outputs, labels, seeds, strict=True)
        ]
    return rows


def indicators(rows: Sequence[dict], lang: str) -> dict[str, dict[str, list[float]]]:
    """Per condition (in order of first appearance) and output category, 1.0 for each of its rows
    whose output falls in the category, else 0.0 (their mean is the category's share of outputs)."""
    known = categories(lang)
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        label = row["language"] if row["language"] in known else OTHER
        values = out.setdefault(row["condition"], {category: [] for category in known})
        for category in known:
            values[category].append(float(label == category))
    return out


def plain_shares(rows: Sequence[dict], lang: str) -> dict[str, dict[str, float]]:
    """Per condition and output category, the share of outputs (no interval)."""
    return {
        name: {category: sum(v) / len(v) for category, v in values.items()}
        for name, values in indicators(rows, lang).items()
    }


def share_estimates(
    rows: Sequence[dict], conditions: Conditions, lang: str, n_boot: int, seed: int
) -> dict[str, dict[str, Estimate]]:
    """Per condition and output category, the share of outputs with its bootstrap interval over the
    prompts (deactivated: paired difference from the random baseline and p)."""
    values = indicators(rows, lang)
    per_category = {
        category: condition_estimates({name: v[category] for name, v in values.items()}, conditions, n_boot, seed)
        for category in categories(lang)
    }
    return {name: {category: per_category[category][name] for category in per_category} for name in values}
