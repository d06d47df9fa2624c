"""Model-facing runs of the neuron characterisation and downstream studies (DESIGN.md 3.5, 3.6).

Each function runs the model through `capture`/`collect`, `generation.generate` or
`generation.next_token_logprobs` under the given conditions (name -> Intervention or None) and
hands the results to the plain analyses of `specificity`, `qa`, `mc` and `langid`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from transfer_neurons.data.mc import LETTERS, MCItem, letter_token_ids, mc_prompt
from transfer_neurons.data.qa import QAItem, qa_prompt
from transfer_neurons.hooks.capture import capture, collect
from transfer_neurons.hooks.generation import generate, next_token_logprobs
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics import specificity as spec
from transfer_neurons.metrics.langid import NONE, LanguageID, shares
from transfer_neurons.metrics.mc import choose
from transfer_neurons.metrics.qa import best_f1, exact_match, first_line
from transfer_neurons.model.loading import LoadedModel

Conditions = dict[str, Intervention | None]


# ---------------------------------------------------------------- specificity


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


# ---------------------------------------------------------------- QA and multiple choice


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


def summarize_rows(rows: Sequence[dict], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric per condition (in order of first appearance), with the count."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["condition"] for row in rows):
        chosen = [row for row in rows if row["condition"] == name]
        out[name] = {"n": len(chosen)} | {m: sum(float(row[m]) for row in chosen) / len(chosen) for m in metrics}
    return out


# ---------------------------------------------------------------- output language and logit lens


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
