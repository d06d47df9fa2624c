"""Multiple choice under deactivation (DESIGN.md 3.6): option-letter log-likelihoods, accuracy."""

from __future__ import annotations

from collections.abc import Sequence

from transfer_neurons.data.mc import LETTERS, MCItem, letter_token_ids, mc_prompt
from transfer_neurons.hooks.generation import next_token_logprobs
from transfer_neurons.hooks.interventions import Conditions
from transfer_neurons.metrics.mc import choose
from transfer_neurons.model.loading import LoadedModel


def mc_study(lm: LoadedModel, items: Sequence[MCItem], conditions: Conditions, batch_size: int = 8) -> list[dict]:
    """Option-letter log-likelihoods after each prompt under each condition; the argmax is the choice."""
    n_options = [len(item.options) for item in items]
    token_ids, _ = letter_token_ids(lm.tokenizer, max(n_options))
    prompts = [mc_prompt(item) for item in items]
    rows = []
    for name, intervention in conditions.items():
        logprobs = next_token_logprobs(lm, prompts, token_ids, intervention, batch_size)
        for item, row, chosen in zip(items, logprobs, choose(logprobs, n_options), strict=True):
            rows.append({
                "condition": name, "id": item.id, "lang": item.lang, "answer": LETTERS[item.answer],
                "predicted": LETTERS[chosen], "correct": chosen == item.answer,
                "logprobs": [round(float(x), 5) for x in row[: len(item.options)]],
            })  # fmt: skip
    return rows
