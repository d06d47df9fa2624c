"""Language of greedy continuations under deactivation (DESIGN.md 3.6)."""

from __future__ import annotations

from collections.abc import Sequence

from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.langid import NONE, LanguageID, shares
from transfer_neurons.model.loading import LoadedModel


def output_language_study(
    lm: LoadedModel,
    prompts: Sequence[str],
    conditions: Conditions,
    identifier: LanguageID,
    lang: str,
    max_new_tokens: int = 24,
    batch_size: int = 8,
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Greedy continuations under each condition, their identified language, and per condition
    the share of outputs in `lang`, in English, without letters ('none') and in other languages."""
    rows, summary = [], {}
    categories = list(dict.fromkeys([lang, "en", NONE]))
    for name, intervention in conditions.items():
        outputs = generate(lm, prompts, intervention, max_new_tokens, batch_size)
        labels = identifier.identify_many(output.strip() for output in outputs)
        rows += [{"condition": name, "prompt": p, "output": o, "language": label}
                 for p, o, label in zip(prompts, outputs, labels, strict=True)]  # fmt: skip
        summary[name] = shares(labels, categories)
    return rows, summary
