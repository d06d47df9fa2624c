"""Logit lens (DESIGN.md 3.6): language share of the top tokens of each layer's state through the unembedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics.langid import NONE, LanguageID, shares
from transfer_neurons.model.loading import LoadedModel


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


def token_language_shares(tokenizer, top: torch.Tensor, identifier: LanguageID, lang: str) -> dict[str, list[float]]:
    """Per layer, the share of the top-k tokens (all sentences) labelled `lang`, 'en', 'none', 'other'."""
    labels: dict[int, str] = {}
    categories = list(dict.fromkeys([lang, "en", NONE]))
    curves: dict[str, list[float]] = {name: [] for name in [*categories, "other"]}
    for layer in range(top.shape[0]):
        ids = top[layer].flatten().tolist()
        for token in set(ids) - set(labels):
            labels[token] = identifier.token_language(tokenizer.decode([token]))
        for name, value in shares((labels[t] for t in ids), categories).items():
            curves[name].append(value)
    return curves
