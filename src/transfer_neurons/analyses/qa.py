"""Generative QA under deactivation (DESIGN.md 3.6): greedy answers, token F1 / exact match."""

from __future__ import annotations

from collections.abc import Sequence

from transfer_neurons.data.qa import QAItem, qa_prompt
from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.qa import best_f1, exact_match, first_line
from transfer_neurons.model.loading import LoadedModel


def qa_study(
    lm: LoadedModel,
    items: Sequence[QAItem],
    conditions: Conditions,
    shots: int = 2,
    max_new_tokens: int = 16,
    batch_size: int = 8,
) -> list[dict]:
    """Greedy answers under each condition, scored by token F1 / exact match (max over aliases)."""
    prompts = [qa_prompt(item.question, item.lang, shots) for item in items]
    rows = []
    for name, intervention in conditions.items():
        outputs = generate(lm, prompts, intervention, max_new_tokens, batch_size, stop_strings=["\n"])
        for item, output in zip(items, outputs, strict=True):
            prediction = first_line(output)
            rows.append({
                "condition": name, "id": item.id, "lang": item.lang, "question": item.question,
                "answers": list(item.answers), "output": output, "prediction": prediction,
                "f1": best_f1(prediction, item.answers, item.lang),
                "em": exact_match(prediction, item.answers, item.lang),
            })  # fmt: skip
    return rows
