"""Per-language mean activations of every neuron, the values steering sets or adds (docs/method.md
section 4, "Steering"): `mean:L` is the mean of `a` (the down projection's input) over every real
token position of language L's sentences, `diffmean:L` that mean minus the mean of the other
languages' means.

The means come from the per-sentence token sums of the capture part ``asum`` (`hooks.tokens`):
with an activation store that keeps the ``sums`` group (`STORE_GROUP`), sentences it already holds
are read, not forwarded. Saved as plain data: `means.safetensors` (tensor `means` [K, L, m] float32)
and `means.json` (languages, sentences and tokens per language, model identity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_neurons.artifacts.io import read_json, read_tensors, write_json, write_tensors
from transfer_neurons.artifacts.names import SCHEMA_VERSION
from transfer_neurons.artifacts.neurons import ModelIdentity
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.model.loading import LoadedModel

MEANS, MEANS_JSON = "means.safetensors", "means.json"
STORE_GROUP = "sums"  # the activation-store group holding the per-sentence token sums
KINDS = ("mean", "diffmean")


@dataclass(frozen=True)
class LanguageMeans:
    """`means[k]` [L, m]: the mean of `a` over every real token of `languages[k]`'s sentences."""

    languages: tuple[str, ...]
    means: torch.Tensor  # [K, L, m] float32
    sentences: tuple[int, ...]
    tokens: tuple[int, ...]
    model: ModelIdentity | None = None

    def values(self, spec: str) -> torch.Tensor:
        """The [L, m] values of `spec`: 'mean:L' or 'diffmean:L' (InputError for another kind, or a
        language without statistics; 'diffmean' needs a second language)."""
        kind, _, lang = spec.partition(":")
        if kind not in KINDS or not lang:
            raise InputError(f"unknown value '{spec}'; use mean:LANG or diffmean:LANG")
        if lang not in self.languages:
            known = ", ".join(self.languages)
            raise InputError(f"'{spec}': no statistics for language '{lang}' (the means hold {known})")
        k = self.languages.index(lang)
        if kind == "mean":
            return self.means[k]
        others = [j for j in range(len(self.languages)) if j != k]
        if not others:
            raise InputError(f"'{spec}' needs the means of at least one other language than '{lang}'")
        return self.means[k] - self.means[others].mean(0)

    def save(self, folder: str | Path) -> list[str]:
        folder = Path(folder)
        write_tensors(folder / MEANS, {"means": self.means.contiguous()})
        write_json(
            folder / MEANS_JSON,
            {
                "schema_version": SCHEMA_VERSION,
                "languages": list(self.languages),
                "sentences": list(self.sentences),
                "tokens": list(self.tokens),
                "model_identity": None if self.model is None else self.model.to_json(),
            },
        )
        return [MEANS, MEANS_JSON]

    @classmethod
    def load(cls, folder: str | Path) -> LanguageMeans:
        folder = Path(folder)
        if not (folder / MEANS_JSON).is_file() or not (folder / MEANS).is_file():
            raise InputError(f"'{folder}' holds no {MEANS_JSON} and {MEANS}; give a steer folder")
        data = read_json(folder / MEANS_JSON)
        return cls(
            tuple(data["languages"]),
            read_tensors(folder / MEANS)["means"],
            tuple(data["sentences"]),
            tuple(data["tokens"]),
            ModelIdentity.from_json(data.get("model_identity"), str(folder / MEANS_JSON)),
        )


def language_means(
    lm: LoadedModel, sentences: Mapping[str, Sequence[str]], batch_size: int = 16, progress: bool = False
) -> LanguageMeans:
    """The mean of `a` per neuron over every real token of each language's sentences (the token sums
    of every sentence, summed in float64, divided by the language's token count)."""
    if not sentences:
        raise InputError("steering values need sentences of at least one language")
    means, counts, tokens = [], [], []
    for lang, texts in sentences.items():
        if not texts:
            raise InputError(f"no sentences of '{lang}' for its mean activations")
        total = torch.zeros(lm.num_layers, lm.mlp_width, dtype=torch.float64)
        length = 0
        for batch in capture(lm, texts, ("asum",), batch_size=batch_size, desc=f"means {lang}", progress=progress):
            assert batch.lengths is not None
            total += torch.stack([batch["asum"][layer] for layer in range(lm.num_layers)], 1).double().sum(0).cpu()
            length += int(batch.lengths.sum())
        means.append((total / length).float())
        counts.append(len(texts))
        tokens.append(length)
    return LanguageMeans(tuple(sentences), torch.stack(means), tuple(counts), tuple(tokens), lm.identity())
