"""Logit lens (docs/method.md section 7): language share of the top tokens of each layer's state through the
unembedding, per sentence; per condition the mean over the sentences with a per-layer bootstrap
interval, and the last layer's shares (the model's own next-token prediction) as estimates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from transfer_neurons.analyses.base import (
    ControlledResult,
    TaskConfig,
    condition_estimates,
    controlled_run,
    max_items_field,
)
from transfer_neurons.analyses.output_lang import identifier_for
from transfer_neurons.analyses.units import describe, seed_fields
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.codec import JsonValue
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Applied, Conditions, for_units, replicated
from transfer_neurons.metrics.langid import NONE, STUDY_LANGS, LanguageID
from transfer_neurons.metrics.uncertainty import Estimate, mean_estimate
from transfer_neurons.model.loading import LoadedModel

TASK = "logit_lens"


class LogitLensConfig(TaskConfig):
    """Settings of a logit-lens run (the defaults of the `logit-lens` command); max_sentences
    chooses the sentences."""

    positions: Positions = Field(Positions.last, description="Where to deactivate (representation: last).")
    tokens: int = Field(10, ge=1, description="Top tokens per layer whose language is counted.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    max_sentences: int | None = max_items_field("sentences")
    langid_langs: tuple[str, ...] | None = Field(
        STUDY_LANGS,
        description="Languages the identifier chooses among (plus the sentence language and English); "
        "'all' (None) for every language py3langid knows.",
    )


@dataclass(frozen=True)
class LayerCurve(JsonValue):
    """A per-layer mean over the sentences, with its per-layer 95 % interval over the sentences
    (`uncertainty.mean_estimate`; None without bootstrap)."""

    values: list[float]
    ci_low: list[float] | None = None
    ci_high: list[float] | None = None

    @classmethod
    def of(cls, per_sentence: np.ndarray, n_boot: int, seed: int, draws: int = 1) -> LayerCurve:
        """The curve of per-sentence values [n, layers] (a random baseline's [draws x n, layers], draw
        by draw: each sentence's mean over the draws is its unit)."""
        units = per_sentence.reshape(draws, -1, per_sentence.shape[-1]).mean(axis=0)
        values = units.mean(axis=0).tolist()
        if n_boot == 0:
            return cls(values)
        bounds = [mean_estimate(layer, n_boot, seed).ci or (np.nan, np.nan) for layer in units.T]
        return cls(values, [b[0] for b in bounds], [b[1] for b in bounds])


@dataclass(kw_only=True)
class LogitLensResult(ControlledResult):
    """Per condition and language label (the sentence language, en, none, other), the share of the
    top tokens of each layer (a curve with its interval) and of the last layer (an estimate;
    deactivated: paired vs random), the per-sentence shares (rows) and the interventions compared."""

    command: ClassVar[str] = "logit-lens"
    TASK: ClassVar[str] = TASK
    SUMMARY: ClassVar[str] = names.summary(TASK)
    SETTINGS: ClassVar[tuple[str, ...]] = ("lang", "tokens")

    tokens: int
    conditions: dict[str, dict[str, LayerCurve]]  # condition -> language label -> share per layer
    last_layer: dict[str, dict[str, Estimate]]  # condition -> language label -> share at the last layer

    @property
    def n_sentences(self) -> int:
        """Sentences per condition (each condition reads the same ones)."""
        return len(self.rows) // len(self.conditions)

    def plot(self, path: Path) -> None:
        shown = {f"{name}: {key}": v[key] for name, v in self.conditions.items() for key in (self.lang, "en")}
        plots.layer_curves(
            {label: c.values for label, c in shown.items()},
            f"Logit lens: language of the top-{self.tokens} tokens ({self.lang} inputs)",
            "share of tokens",
            path,
            bands={
                k: (c.ci_low, c.ci_high) for k, c in shown.items() if c.ci_low is not None and c.ci_high is not None
            },
            n_label=f"n = {self.n_sentences} sentences",
        )

    def summary_lines(self) -> list[str]:
        lines = []
        for name, curves in self.conditions.items():
            share, last = curves[self.lang], self.last_layer[name]
            peak = max(range(len(share.values)), key=share.values.__getitem__)
            lines.append(
                f"{name:>11}: {self.lang} share peaks at layer {peak} ({share.values[peak]:.1%}); last layer "
                f"{self.lang} {describe(last[self.lang])}, en {describe(last['en'])} ({self.n_sentences} sentences)"
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
    identifier = identifier_for(config.langid_langs, lang)

    def measure(conditions: Conditions) -> tuple[list[dict], dict[str, Any]]:
        per_sentence, rows = {}, []
        for name, condition in conditions.items():
            applied = for_units(condition, len(sentences))  # a random baseline: every sentence under every draw
            runs = replicated(condition, sentences)
            top = logit_lens_tokens(lm, runs, config.tokens, applied, config.batch_size, progress)
            shares = per_sentence[name] = token_language_shares(lm.tokenizer, top, identifier, lang)
            seeds = seed_fields(condition, len(sentences))
            rows += [
                {"condition": name, **seeds[i], "sentence": s, "shares": {k: v[i].tolist() for k, v in shares.items()}}
                for i, s in enumerate(runs)
            ]
        labels = list(per_sentence["normal"])
        last = {
            label: condition_estimates(
                {name: v[label][:, -1] for name, v in per_sentence.items()}, conditions, config.bootstrap, config.seed
            )
            for label in labels
        }
        curves = {
            name: {
                label: LayerCurve.of(v, config.bootstrap, config.seed, len(v) // len(sentences))
                for label, v in values.items()
            }
            for name, values in per_sentence.items()
        }
        last_layer = {name: {label: last[label][name] for label in labels} for name in conditions}
        return rows, {"tokens": config.tokens, "conditions": curves, "last_layer": last_layer}

    tail = {"langid": identifier.settings()}
    settings = {"n_sentences": len(sentences)}
    return controlled_run(LogitLensResult, lm, lang, neurons, config, measure, lambda: settings, tail)


def logit_lens_tokens(
    lm: LoadedModel,
    sentences: Sequence[str],
    k: int = 10,
    intervention: Applied = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Top-k token ids [L, n, k] of final norm + unembedding applied to each layer's last-token h^l
    (`intervention`: one for every sentence, or one per sentence)."""
    states = collect(
        lm, sentences, ("h",), batch_size=batch_size, desc="logit lens", progress=progress, intervention=intervention
    )["h"]
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
) -> dict[str, np.ndarray]:
    """Per label (`lang`, 'en', 'none', 'other'), the share of each sentence's top-k tokens of each
    layer with that label [n, L] (a sentence's shares at a layer sum to 1 over the labels)."""
    categories = list(dict.fromkeys([lang, "en", NONE]))
    known = {
        token: identifier.token_language(cast(str, tokenizer.decode([token])))  # one id: one text
        for token in top.unique().tolist()
    }
    labels = np.array([[[known[t] for t in row] for row in layer] for layer in top.tolist()])  # [L, n, k]
    labels = np.where(np.isin(labels, categories), labels, "other")
    return {name: (labels == name).mean(axis=-1).T for name in [*categories, "other"]}
