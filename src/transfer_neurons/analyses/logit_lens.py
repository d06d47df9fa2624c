"""Logit lens (DESIGN.md 3.6): language share of the top tokens of each layer's state through the unembedding."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from transfer_neurons.analyses.base import ControlConfig, ControlledResult, conditions_for
from transfer_neurons.analyses.output_lang import identifier_for
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, write_json
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics.langid import NONE, STUDY_LANGS, LanguageID, shares
from transfer_neurons.model.loading import LoadedModel

TASK = "logit_lens"


class LogitLensConfig(ControlConfig):
    """Settings of a logit-lens run (the defaults of the `logit-lens` command); max_sentences
    chooses the sentences."""

    top_k: int = Field(1000, ge=1, description="Deactivate the top-k neurons of the set.")
    positions: Positions = Field(Positions.last, description="Where to deactivate (representation: last).")
    tokens: int = Field(10, ge=1, description="Top tokens per layer whose language is counted.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    max_sentences: int | None = Field(None, ge=1, description="Use at most this many sentences (None: all).")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS,
        description="Languages the identifier chooses among (plus the sentence language and English); "
        "None: every language py3langid knows.",
    )


@dataclass(kw_only=True)
class LogitLensResult(ControlledResult):
    """Per condition and language label (the sentence language, en, none, other), the share of the
    top tokens of each layer, with the interventions it compared."""

    command: ClassVar[str] = "logit-lens"

    tokens: int
    conditions: dict[str, dict[str, list[float]]]  # condition -> language label -> share per layer

    def write_files(self, out: Path) -> list[str]:
        files = [names.summary(TASK), names.figure(TASK)]
        write_json(out / names.summary(TASK), {**self.header(tokens=self.tokens), "conditions": self.conditions})
        lines = {f"{name}: {key}": values[key] for name, values in self.conditions.items() for key in (self.lang, "en")}
        plots.layer_curves(
            lines,
            f"Logit lens: language of the top-{self.tokens} tokens ({self.lang} inputs)",
            "share of tokens",
            out / names.figure(TASK),
        )
        return files + self.write_interventions(out)

    def manifest_fields(self) -> dict[str, Any]:
        fields = super().manifest_fields()
        return {**fields, "settings": {"lang": self.lang, "tokens": self.tokens, **self.settings}}

    @classmethod
    def load(cls, out: str | Path) -> LogitLensResult:
        """A logit-lens folder written by `save` (from the command line, a study or Python)."""
        out = Path(out)
        common = cls.read_common(out)
        tokens = common["settings"].pop("tokens")
        return cls(**common, tokens=tokens, conditions=read_json(out / names.summary(TASK))["conditions"])

    def summary_lines(self) -> list[str]:
        lines = []
        for name, values in self.conditions.items():
            share = values[self.lang]
            peak = max(range(len(share)), key=share.__getitem__)
            lines.append(
                f"{name:>11}: {self.lang} share peaks at layer {peak} ({share[peak]:.1%}); last layer "
                f"{self.lang} {share[-1]:.1%}, en {values['en'][-1]:.1%}"
            )
        return lines


def run(
    lm: LoadedModel,
    sentences: Sequence[str],
    neurons: NeuronSet | None,
    config: LogitLensConfig,
    lang: str,
    progress: bool = False,
) -> LogitLensResult:
    """Per layer, the language shares of the logit-lens top tokens of `sentences` (in `lang`) normally
    and, given a neuron set, with its top-k deactivated and with a random baseline (the command line
    and the study call this)."""
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    if config.tokens > vocab:
        raise InputError(f"--tokens {config.tokens} exceeds the vocabulary size {vocab}")
    start = time.perf_counter()
    identifier = identifier_for(config.langid_langs, lang)
    conditions = conditions_for(lm, neurons, config, config.positions)
    curves = {}
    for name, intervention in conditions.items():
        top = logit_lens_tokens(lm, sentences, config.tokens, intervention, config.batch_size, progress)
        curves[name] = token_language_shares(lm.tokenizer, top, identifier, lang)
    settings = {
        "top_k": config.top_k if neurons else None,
        "positions": config.positions.value,
        "n_sentences": len(sentences),
        "baseline": config.baseline.value,
        "langid": {"library": "py3langid", "langs": list(identifier.langs or ["all"])},
    }
    return LogitLensResult(
        model=lm.name,
        lang=lang,
        tokens=config.tokens,
        seed=config.seed,
        conditions=curves,
        deactivated=conditions.get("deactivated"),
        random=conditions.get("random"),
        settings=settings,
        timings={"total": time.perf_counter() - start},
    )


def logit_lens_tokens(
    lm: LoadedModel,
    sentences: Sequence[str],
    k: int = 10,
    intervention: Intervention | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Top-k token ids [L, n, k] of final norm + unembedding applied to each layer's last-token h^l."""
    with apply_intervention(lm, intervention):
        states = collect(lm, sentences, ("h",), batch_size=batch_size, desc="logit lens", progress=progress)["h"]
    norm = lm.adapter.final_norm_module(lm.model)
    head = lm.model.get_output_embeddings()
    top = torch.empty(lm.num_layers, len(sentences), k, dtype=torch.long)
    with torch.inference_mode():
        for layer in range(lm.num_layers):
            for start in range(0, len(sentences), 64):
                h = states[layer, start : start + 64].to(lm.device, head.weight.dtype)
                top[layer, start : start + 64] = head(norm(h)).topk(k, dim=-1).indices.cpu()
    return top


def token_language_shares(
    tokenizer: PreTrainedTokenizerBase, top: torch.Tensor, identifier: LanguageID, lang: str
) -> dict[str, list[float]]:
    """Per layer, the share of the top-k tokens (all sentences) labelled `lang`, 'en', 'none', 'other'."""
    labels: dict[int, str] = {}
    categories = list(dict.fromkeys([lang, "en", NONE]))
    curves: dict[str, list[float]] = {name: [] for name in [*categories, "other"]}
    for layer in range(top.shape[0]):
        ids = top[layer].flatten().tolist()
        for token in set(ids) - set(labels):
            labels[token] = identifier.token_language(cast(str, tokenizer.decode([token])))  # one id: one text
        for name, value in shares((labels[t] for t in ids), categories).items():
            curves[name].append(value)
    return curves
