"""Language specificity of neuron sets (DESIGN.md 3.5): streaming activation statistics, eta^2, ANOVA."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transfer_neurons.hooks.capture import capture
from transfer_neurons.metrics import specificity as spec
from transfer_neurons.model.loading import LoadedModel


def activation_stats(
    lm: LoadedModel, sentences: dict[str, Sequence[str]], batch_size: int = 16, progress: bool = True
) -> spec.GroupStats:
    """Streaming per-language statistics of every neuron's last-token activation, shape [L, m]."""
    stats = spec.GroupStats(len(sentences), (lm.num_layers, lm.mlp_width))
    layers = range(lm.num_layers)
    for group, (lang, texts) in enumerate(sentences.items()):
        for batch in capture(lm, texts, ("act",), batch_size=batch_size, desc=f"activations ({lang})",
                             progress=progress):  # fmt: skip
            stats.update(torch.stack([batch["act"][layer] for layer in layers], dim=1), group)
    return stats


def specificity_report(
    stats: spec.GroupStats,
    langs: Sequence[str],
    families: Sequence[str],
    neuron_sets: dict[str, dict],
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Summaries per neuron set and per labelling, and the per-neuron eta^2 / p tensors.

    `neuron_sets[name]` holds ``lang`` (the target language), ``top`` and ``random`` (lists of
    (layer, neuron)). Labellings: the set's target language vs the rest, language families (when
    there are at least two), and all languages.
    """
    targets = list(dict.fromkeys(info["lang"] for info in neuron_sets.values()))
    results, tensors = {}, {}
    for name, mapping in spec.labelings(langs, families, targets).items():
        merged = stats.regroup(mapping)
        eta2, p = merged.eta_squared(), merged.anova_p()
        key = name.replace(":", "_")
        tensors[f"eta2_{key}"], tensors[f"p_{key}"] = eta2.float(), p
        results[name] = (eta2, p)
    summary = {}
    for set_name, info in neuron_sets.items():
        per = {}
        for name, (eta2, p) in results.items():
            if name.startswith("target:") and name != f"target:{info['lang']}":
                continue
            label = "target" if name.startswith("target:") else name
            per[label] = {which: spec.summarize(eta2, p, info[which]) for which in ("top", "random")}
        summary[set_name] = {k: v for k, v in info.items() if k not in ("top", "random")} | per
    return summary, tensors
