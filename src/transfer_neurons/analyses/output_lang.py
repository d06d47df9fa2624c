"""Language of greedy continuations under deactivation (DESIGN.md 3.6)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from transfer_neurons.analyses.base import ControlConfig, ControlledResult, conditions_for
from transfer_neurons.analyses.estimate import Say, with_estimate
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.langid import NONE, STUDY_LANGS, UNDECODABLE, LanguageID, shares, undecodable
from transfer_neurons.model.loading import LoadedModel

TASK = "output_lang"


def identifier_for(langs: Sequence[str] | None, lang: str) -> LanguageID:
    """The identifier choosing among `langs`, `lang` and English (None: every language py3langid knows)."""
    return LanguageID(None if langs is None else [*langs, lang, "en"])


class OutputLangConfig(ControlConfig):
    """Settings of an output-language run (the defaults of the `output-lang` command); max_prompts
    chooses the prompts."""

    top_k: int = Field(1000, ge=1, description="Deactivate the top-k neurons of the set.")
    positions: Positions = Field(Positions.all, description="Where to deactivate; 'all' includes the generated tokens.")
    max_new_tokens: int = Field(24, ge=1, description="Tokens to generate per prompt.")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    max_prompts: int | None = Field(None, ge=1, description="Use at most this many prompts (None: all).")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS,
        description="Languages the identifier chooses among (plus the prompt language and English); "
        "None: every language py3langid knows.",
    )


@dataclass(kw_only=True)
class OutputLangResult(ControlledResult):
    """Continuations with their identified language (rows) and, per condition, the share of outputs
    in the prompt language, English, none (no letters), undecodable (bytes that do not decode, U+FFFD)
    and other languages."""

    command: ClassVar[str] = "output-lang"

    conditions: dict[str, dict[str, float]]  # condition -> language label -> share of outputs
    rows: list[dict]

    @property
    def n_prompts(self) -> int:
        """Prompts per condition (each condition continues the same ones)."""
        return len(self.rows) // len(self.conditions)

    def write_files(self, out: Path) -> list[str]:
        files = [names.rows(TASK), names.summary(TASK), names.figure(TASK)]
        write_jsonl(out / names.rows(TASK), self.rows)
        write_json(out / names.summary(TASK), {**self.header(), "conditions": self.conditions})
        plots.grouped_bars(
            self.conditions,
            f"Language of continuations of {self.n_prompts} {self.lang} prompts",
            "share of outputs",
            out / names.figure(TASK),
            (0, 1),
        )
        return files + self.write_interventions(out)

    @classmethod
    def load(cls, out: str | Path) -> OutputLangResult:
        """An output-language folder written by `save` (from the command line, a study or Python)."""
        out = Path(out)
        common = cls.read_common(out)
        return cls(
            **common,
            conditions=read_json(out / names.summary(TASK))["conditions"],
            rows=read_jsonl(out / names.rows(TASK)),
        )

    def summary_lines(self) -> list[str]:
        return [
            f"{name:>11}: " + ", ".join(f"{label} {share:.1%}" for label, share in values.items())
            for name, values in self.conditions.items()
        ]


def run(
    lm: LoadedModel,
    prompts: Sequence[str],
    neurons: NeuronSet | None,
    config: OutputLangConfig,
    lang: str,
    say: Say | None = None,
) -> OutputLangResult:
    """Continuations of `prompts` (in `lang`) normally and, given a neuron set, with its top-k
    deactivated and with a random baseline (the command line and the study call this). `say` gets
    one line with a time estimate after the first batch."""
    start = time.perf_counter()
    identifier = identifier_for(config.langid_langs, lang)
    conditions = conditions_for(lm, neurons, config, config.positions)
    rows, summary = output_language_study(
        lm, prompts, conditions, identifier, lang, config.max_new_tokens, config.batch_size, say
    )
    settings = {
        "top_k": config.top_k if neurons else None,
        "positions": config.positions.value,
        "max_new_tokens": config.max_new_tokens,
        "n_prompts": len(prompts),
        "baseline": config.baseline.value,
        "langid": {"library": "py3langid", "langs": list(identifier.langs or ["all"])},
        "batch_size": config.batch_size,
    }
    return OutputLangResult(
        model=lm.name,
        lang=lang,
        seed=config.seed,
        conditions=summary,
        rows=rows,
        deactivated=conditions.get("deactivated"),
        random=conditions.get("random"),
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )


def output_language_study(
    lm: LoadedModel,
    prompts: Sequence[str],
    conditions: Conditions,
    identifier: LanguageID,
    lang: str,
    max_new_tokens: int = 24,
    batch_size: int = 8,
    say: Say | None = None,
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Greedy continuations under each condition, their identified language, and per condition
    the share of outputs in `lang`, in English, without letters ('none'), with bytes that do not
    decode ('undecodable', see `metrics.langid.undecodable`; identified no further) and in other
    languages."""
    rows, summary = [], {}
    categories = list(dict.fromkeys([lang, "en", NONE, UNDECODABLE]))
    for k, (name, intervention) in enumerate(conditions.items()):
        step = partial(generate, lm, intervention=intervention, max_new_tokens=max_new_tokens, batch_size=batch_size)
        parts = with_estimate(step, prompts, batch_size, len(conditions), say if k == 0 else None)
        outputs = [output for part in parts for output in part]
        labels = [UNDECODABLE if undecodable(o) else identifier.identify(o.strip()) for o in outputs]
        rows += [
            {"condition": name, "prompt": p, "output": o, "language": label}
            for p, o, label in zip(prompts, outputs, labels, strict=True)
        ]
        summary[name] = shares(labels, categories)
    return rows, summary
