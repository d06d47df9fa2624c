"""Steering sweep: the language of greedy continuations with the top-k neurons of a set scaled by a
factor, for every factor and k (a dose-response curve of amplification and deactivation)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from transfer_neurons.analyses.base import Config
from transfer_neurons.analyses.output_lang import identifier_for, output_language_study, plain_shares
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_jsonl, write_json, write_jsonl
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Positions
from transfer_neurons.hooks.interventions import Conditions, Intervention
from transfer_neurons.metrics.langid import STUDY_LANGS
from transfer_neurons.model.loading import LoadedModel

NORMAL = "normal"


class SweepConfig(Config):
    """Settings of a steering sweep (the defaults of the `sweep` command)."""

    factors: tuple[float, ...] = Field((0.0, 0.5, 2.0, 4.0, 8.0), min_length=1, description="Scaling factors.")
    top_k: tuple[int, ...] = Field((10, 100, 1000), min_length=1, description="Sizes of the scaled top-k sets.")
    positions: Positions = Field(Positions.all, description="Where to scale; 'all' includes the generated tokens.")
    max_new_tokens: int = Field(24, ge=1, description="Tokens to generate per prompt.")
    batch_size: int = Field(8, ge=1, description="Prompts per batch.")
    max_items: int = Field(100, ge=1, description="Use at most this many prompts.")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS,
        description="Languages the identifier chooses among (plus the prompt language and English); "
        "'all' (None) for every language py3langid knows.",
    )


def condition_name(factor: float, top_k: int) -> str:
    """The condition label of one cell of the sweep, e.g. 'x4 top-100'."""
    return f"x{factor:g} top-{top_k}"


@dataclass(kw_only=True)
class SweepResult(Result):
    """Per factor and top-k, the share of continuations in the prompt language, English, none (no
    letters) and other languages; `normal` holds the shares without an intervention."""

    command: ClassVar[str] = "sweep"
    SUMMARY: ClassVar[str] = names.SWEEP
    SETTINGS: ClassVar[tuple[str, ...]] = ("lang", "factors", "top_k")
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("rows",)

    model: str
    lang: str
    factors: list[float]
    top_k: list[int]
    normal: dict[str, float]  # language label -> share of outputs
    cells: dict[tuple[float, int], dict[str, float]]  # (factor, k) -> language label -> share
    rows: list[dict]  # one per prompt and condition (normal, then factor x k)
    neurons: dict[str, Any] = field(default_factory=dict)  # lang, type, source of the neuron set
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def target_share(self, factor: float, top_k: int) -> float:
        return self.cells[(factor, top_k)][self.lang]

    def to_json(self) -> dict[str, Any]:
        """The generic summary with the neuron set after the language and the cells as a list."""
        cells = [{"factor": f, "top_k": k, "shares": shares} for (f, k), shares in self.cells.items()]
        data = super().to_json() | {"cells": cells}
        return dict(list(data.items())[:3]) | {"neurons": self.neurons} | data

    @classmethod
    def summary_values(cls, data: dict[str, Any]) -> dict[str, Any]:
        values = super().summary_values({key: value for key, value in data.items() if key != "cells"})
        return values | {"cells": {(c["factor"], c["top_k"]): c["shares"] for c in data["cells"]}}

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {"rows": read_jsonl(out / names.SWEEP_ROWS)}

    def write_files(self, out: Path) -> list[str]:
        write_jsonl(out / names.SWEEP_ROWS, self.rows)
        write_json(out / names.SWEEP, self.to_json())
        factors = sorted(self.factors)
        plots.dose_response(
            factors,
            {f"top-{k}": [self.target_share(f, k) for f in factors] for k in self.top_k},
            self.normal[self.lang],
            self.lang,
            out / names.SWEEP_FIGURE,
        )
        return [names.SWEEP, names.SWEEP_ROWS, names.SWEEP_FIGURE]

    def summary_lines(self) -> list[str]:
        width = max(len(f"top-{k}") for k in self.top_k) + 1
        lines = [f"share of outputs in {self.lang} (normal {self.normal[self.lang]:.1%})"]
        lines.append("factor  " + "".join(f"{'top-' + str(k):>{width + 2}}" for k in self.top_k))
        for f in self.factors:
            lines.append(f"{f:>6g}  " + "".join(f"{self.target_share(f, k):>{width + 2}.1%}" for k in self.top_k))
        return lines


def run(
    lm: LoadedModel, prompts: Sequence[str], neurons: NeuronSet, config: SweepConfig, lang: str, progress: bool = False
) -> SweepResult:
    """Continuations of `prompts` (in `lang`) normally and with the top-k neurons of `neurons` scaled
    by each factor, for every k (the command line calls this)."""
    start = time.perf_counter()
    lm.check_neurons(neurons)
    for k in config.top_k:
        neurons.check_top_k(k)
    factors, top_k = list(dict.fromkeys(config.factors)), list(dict.fromkeys(config.top_k))
    conditions: Conditions = {NORMAL: None}
    for k in top_k:
        for f in factors:
            conditions[condition_name(f, k)] = Intervention.from_neurons(neurons, k, f, config.positions)
    identifier = identifier_for(config.langid_langs, lang)
    rows = output_language_study(
        lm, prompts, conditions, identifier, lang, config.max_new_tokens, config.batch_size, progress
    )
    summary = plain_shares(rows, lang)
    cell_of = {condition_name(f, k): (f, k) for k in top_k for f in factors}
    for row in rows:
        row["factor"], row["top_k"] = cell_of.get(row["condition"], (None, None))
    settings = {
        "positions": config.positions.value,
        "max_new_tokens": config.max_new_tokens,
        "n_prompts": len(prompts),
        "langid": identifier.settings(),
        "batch_size": config.batch_size,
    }
    return SweepResult(
        model=lm.name,
        lang=lang,
        factors=factors,
        top_k=top_k,
        normal=summary[NORMAL],
        cells={cell: summary[name] for name, cell in cell_of.items()},
        rows=rows,
        neurons={"lang": neurons.lang, "type": neurons.neuron_type, "source": neurons.source},
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )
