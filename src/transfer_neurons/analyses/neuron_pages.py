"""Neuron pages (docs/method.md section 11): what each neuron of the given sets writes, when it fires, and what
removing it alone does; an index page and one card per neuron.

One pass over the sentences of every language captures, at the cards' layers, the last-token state
`h`, the activations of the cards' neurons and the post-MLP norm's scale; everything else comes from
those and the weights, vectorised over the cards:

- the tokens a neuron's value vector promotes and suppresses, `W_U (g_final * u_i)` (`u_i = g * v_i`
  under a post-MLP norm of gain g, else `v_i`; the logits are those of a unit activation);
- its activation per language (count, mean, sd, box plot numbers), eta^2 of the set's language vs
  the rest, and the sentences of each language where it fires most and least;
- the massive dimensions of its layer (`metrics.vocab.massive_dimensions` of the mean state over all
  sentences) and the share of `|u_i|^2` in them;
- per set with centroids (`centroids.safetensors` beside its neurons.json), the change of the
  state's cosine to the set's centroid at the neuron's layer when the neuron alone is deactivated,
  `cos(h - a_i u_i, c) - cos(h, c)` (exact for plain MLPs, the frozen-norm linearisation under a
  post-MLP norm; h and c measured from the reference mean of a centred score), averaged over the
  sentences of the set's language with a bootstrap interval.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config, bootstrap_field, max_items_field, seed_field
from transfer_neurons.artifacts import names, neuron_html
from transfer_neurons.artifacts.io import read_jsonl, read_tensors, write_jsonl
from transfer_neurons.artifacts.neurons import Neuron, NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.metrics import vocab
from transfer_neurons.metrics.scoring import LayerScorer, effective_values
from transfer_neurons.metrics.specificity import GroupStats
from transfer_neurons.metrics.uncertainty import mean_estimate
from transfer_neurons.model.adapters import module_weight
from transfer_neurons.model.loading import LoadedModel


class NeuronPagesConfig(Config):
    """Settings of the neuron pages."""

    top_n: int = Field(20, ge=1, description="Pages for the top-n neurons of each set.")
    tokens: int = Field(20, ge=1, description="Tokens listed as promoted and as suppressed.")
    sentences: int = Field(5, ge=1, description="Sentences per language listed where a neuron fires most / least.")
    bootstrap: int = bootstrap_field()
    seed: int = seed_field("Seed of the bootstrap.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    max_sentences: int | None = max_items_field("sentences per language")


@dataclass(eq=False)
class NeuronPages(Result):
    """One card per neuron (the rows of neurons.jsonl, plain JSON data: see `neuron_html` for what
    a card holds), the sets they come from and the sentences per language they were measured on."""

    command: ClassVar[str] = "neurons"

    model: str
    sets: dict[str, dict[str, Any]]  # name -> lang, type, method, source, listed, centroids, centred
    n_sentences: dict[str, int]
    cards: list[dict[str, Any]]
    config: NeuronPagesConfig
    timings: dict[str, float] = field(default_factory=dict)

    def card(self, layer: int, neuron: int) -> dict[str, Any]:
        """The card of one neuron; InputError when it has none."""
        for card in self.cards:
            if (card["layer"], card["neuron"]) == (layer, neuron):
                return card
        raise InputError(f"no page for neuron {layer}:{neuron} in this result")

    def meta(self) -> dict[str, Any]:
        """What the pages show besides the cards."""
        return {
            "model": self.model,
            "sets": self.sets,
            "n_sentences": self.n_sentences,
            "top_n": self.config.top_n,
            "bootstrap": self.config.bootstrap,
        }

    def write_files(self, out: Path) -> list[str]:
        write_jsonl(out / names.NEURON_ROWS, self.cards)
        return [names.NEURON_ROWS, *neuron_html.write_pages(out, self.cards, self.meta())]

    def manifest_fields(self) -> dict[str, Any]:
        fields = super().manifest_fields()
        fields["settings"] |= {"sets": self.sets, "n_sentences": self.n_sentences}
        return fields

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {"cards": read_jsonl(out / names.NEURON_ROWS)}

    def written(self, out: Path) -> str:
        return (
            f"wrote {out}/{names.NEURON_INDEX}, {out}/{names.NEURON_ROWS}, {out}/{names.MANIFEST} and "
            f"{len(self.cards)} pages in {out}/{names.NEURON_CARDS}/"
        )

    def headline(self) -> dict[str, Any]:
        """What the study records of the step: the pages and the top-n they cover."""
        return {"pages": len(self.cards), "top_n": self.config.top_n}

    def summary_lines(self) -> list[str]:
        """How many pages, on what; per set its first neuron in one line."""
        counts = ", ".join(f"{lang} {n}" for lang, n in self.n_sentences.items()) or "no sentences"
        lines = [f"{len(self.cards)} neuron pages for {', '.join(self.sets)} ({counts})"]
        for name in self.sets:
            first = next((c for c in self.cards for e in c["sets"] if e["set"] == name and e["rank"] == 1), None)
            if first is not None:
                lines.append(f"{name} #1: {neuron_html.card_headline(first, name)}")
        return lines


def card_neurons(sets: Mapping[str, NeuronSet], top_n: int) -> list[Neuron]:
    """The union of the sets' top-n, in set order then rank order."""
    return list(dict.fromkeys(n for s in sets.values() for n in s.neurons(top_n)))


def beside(s: NeuronSet, file: str, shapes: Mapping[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The tensors named in `shapes` of the file `file` in the folder of a set's neurons.json (none
    when there is no such file); InputError when one has another shape, i.e. it was made for another model."""
    path = Path(s.source).parent / file if s.source else None
    if path is None or not path.is_file():
        return {}
    tensors = {key: t for key, t in read_tensors(path).items() if key in shapes}
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != shapes[key]:
            raise InputError(
                f"'{path}' holds {key} of shape {tuple(tensor.shape)}, but the model's is {shapes[key]}; "
                "was it made for another model?"
            )
    return tensors


def frames(lm: LoadedModel, sets: Mapping[str, NeuronSet]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per set with centroids beside its neurons.json, its centroids and the origin its score measured
    cosines from [L, d] each: the centred score's reference mean, else zeros."""
    out = {}
    shape = (lm.num_layers, lm.hidden_size)
    for name, s in sets.items():
        tensors = beside(s, names.CENTROIDS, {"centroids": shape, "reference_mean": shape})
        if "centroids" in tensors:
            out[name] = (tensors["centroids"], tensors.get("reference_mean", torch.zeros(shape)))
    return out


def check_inputs(
    lm: LoadedModel, sets: Mapping[str, NeuronSet], sentences: Mapping[str, Sequence[str]], neurons: Sequence[Neuron]
) -> None:
    """InputError for no set, a set of another model (a neuron or layer outside the model), a set whose
    language no sentences cover (when there are sentences), no neuron, or a neuron outside the model."""
    if not sets:
        raise InputError("give at least one neuron set (--neurons)")
    if not neurons:
        raise InputError("give at least one neuron (LAYER:NEURON)")
    for s in sets.values():
        lm.check_neurons(s)
        if sentences and s.lang is not None and s.lang not in sentences:
            raise InputError(f"'{s.source}' is for '{s.lang}', which no --data covers ({', '.join(sentences)})")
    for layer, neuron in neurons:
        if not (0 <= layer < lm.num_layers and 0 <= neuron < lm.mlp_width):
            raise InputError(
                f"neuron {layer}:{neuron} lies outside the model's {lm.num_layers} layers x {lm.mlp_width} neurons"
            )


def run(
    lm: LoadedModel,
    sets: Mapping[str, NeuronSet],
    sentences: Mapping[str, Sequence[str]],
    config: NeuronPagesConfig,
    neurons: Sequence[Neuron] | None = None,
    progress: bool = False,
) -> NeuronPages:
    """Cards for `neurons` (default: the union of the sets' top-n) from one pass over `sentences`
    (language -> sentences; may be empty: then only the sets and the vocabulary projection). `sets`:
    name -> neuron set (see `analyses.specificity.name_sets`). The command line and the study call this."""
    start = time.perf_counter()
    sentences = {lang: list(texts[: config.max_sentences]) for lang, texts in sentences.items() if texts}
    cards = list(dict.fromkeys(neurons)) if neurons is not None else card_neurons(sets, config.top_n)
    check_inputs(lm, sets, sentences, cards)
    shape = (lm.num_layers, lm.mlp_width)
    scores = {name: beside(s, names.SCORES, {"scores": shape}).get("scores") for name, s in sets.items()}
    centroids = frames(lm, sets)
    values = torch.stack([_value_vector(lm, layer, neuron) for layer, neuron in cards])  # [K, d]
    gain = lm.adapter.final_norm_gain(lm.model)
    ranking = vocab.top_tokens(module_weight(lm.model.get_output_embeddings()), gain, values, config.tokens)
    measured = _measure(lm, sentences, cards, centroids, sets, config, progress)
    built = []
    for k, (layer, neuron) in enumerate(cards):
        card: dict[str, Any] = {"layer": layer, "neuron": neuron, "value_norm": float(values[k].norm())}
        card["sets"] = [
            _membership(name, s, _rank(s, scores[name], layer, neuron), k, measured, config) for name, s in sets.items()
        ]
        card["promoted"] = _tokens(lm, ranking.promoted_ids[k], ranking.promoted[k])
        card["suppressed"] = _tokens(lm, ranking.suppressed_ids[k], ranking.suppressed[k])
        unmeasured: dict[str, Any] = {"massive": None, "activation": {}, "sentences": {}}
        built.append(card | (measured.fields(k, layer, values[k], config.sentences) if measured else unmeasured))
    described = {
        name: {
            "lang": s.lang,
            "type": s.neuron_type,
            "method": s.method,
            "source": s.source,
            "listed": len(s.top),
            "centroids": name in centroids,
            "centred": name in centroids and bool(centroids[name][1].any()),
        }
        for name, s in sets.items()
    }
    return NeuronPages(
        model=lm.name,
        sets=described,
        n_sentences={lang: len(t) for lang, t in sentences.items()},
        cards=built,
        config=config,
        timings={"total": time.perf_counter() - start},
    )


@dataclass
class _Measured:
    """What the one pass over the sentences gave: each card's activation per sentence [N, K], the
    mean state of each card layer [d], per set with a centroid each sentence's cosine change when
    each card's neuron alone is deactivated [N, K], the sentence indices of each language, and eta^2
    [K] of the activations, target language vs the rest, per set language."""

    texts: list[str]
    act: torch.Tensor
    means: dict[int, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    rows: dict[str, torch.Tensor]
    eta2: dict[str, torch.Tensor]

    def fields(self, k: int, layer: int, value: torch.Tensor, n: int) -> dict[str, Any]:
        """Card k's massive dimensions, activation per language and extreme sentences."""
        dims = vocab.massive_dimensions(self.means[layer])
        share = float(vocab.dimension_share(value[None], dims)[0]) if dims else None
        activation, sentences = {}, {}
        for lang, index in self.rows.items():
            own = self.act[index, k].numpy()
            activation[lang] = vocab.box_stats(own)
            top, bottom = vocab.extremes(own, n)
            sentences[lang] = {
                which: [{"text": self.texts[int(index[i])], "act": float(own[i])} for i in picked]
                for which, picked in (("top", top), ("bottom", bottom))
            }
        return {"massive": {"dims": dims, "share": share}, "activation": activation, "sentences": sentences}


def _measure(
    lm: LoadedModel,
    sentences: Mapping[str, Sequence[str]],
    cards: Sequence[Neuron],
    centroids: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    sets: Mapping[str, NeuronSet],
    config: NeuronPagesConfig,
    progress: bool,
) -> _Measured | None:
    """The one pass over all sentences (None without sentences)."""
    texts = [t for lang_texts in sentences.values() for t in lang_texts]
    if not texts:
        return None
    langs = [lang for lang, lang_texts in sentences.items() for _ in lang_texts]
    act, means, deltas = _one_pass(lm, texts, cards, centroids, config.batch_size, progress)
    rows = {lang: torch.tensor([k for k, x in enumerate(langs) if x == lang]) for lang in sentences}
    return _Measured(texts, act, means, deltas, rows, _eta2(act, langs, {s.lang for s in sets.values()}))


def _membership(
    name: str,
    s: NeuronSet,
    ranked: tuple[int | None, float | None],
    k: int,
    measured: _Measured | None,
    config: NeuronPagesConfig,
) -> dict[str, Any]:
    """Card k's place in one set: rank, score, eta^2 of the set's language vs the rest, and the mean
    cosine change to the set's centroid when the neuron alone is deactivated, over the sentences of
    the set's language (None where the data or the centroids are missing)."""
    rank, score = ranked
    eta2, cos = None, None
    if measured is not None and s.lang is not None:
        if s.lang in measured.eta2:
            eta2 = float(measured.eta2[s.lang][k])
        if name in measured.deltas and s.lang in measured.rows:
            index = measured.rows[s.lang]
            estimate = mean_estimate(measured.deltas[name][index, k].numpy(), config.bootstrap, config.seed)
            cos = estimate.to_json() | {"n": len(index)}
    return {
        "set": name,
        "method": s.method,
        "type": s.neuron_type,
        "lang": s.lang,
        "rank": rank,
        "score": score,
        "in_top": rank is not None and rank <= config.top_n,
        "eta2_target": eta2,
        "cos_change": cos,
    }


def _value_vector(lm: LoadedModel, layer: int, neuron: int) -> torch.Tensor:
    """`g * v_i` (`v_i` without a post-MLP norm) [d] float32 on the CPU."""
    v = lm.adapter.value_vectors(lm.model, layer)[neuron : neuron + 1]
    return effective_values(v, lm.adapter.post_norm_gain(lm.model, layer))[0].cpu()


def _tokens(lm: LoadedModel, ids: torch.Tensor, logits: torch.Tensor) -> list[dict[str, Any]]:
    return [
        {"id": i, "token": lm.tokenizer.decode([i]), "piece": lm.tokenizer.convert_ids_to_tokens(i), "logit": v}
        for i, v in zip(ids.tolist(), logits.tolist(), strict=True)
    ]


def _rank(s: NeuronSet, scores: torch.Tensor | None, layer: int, neuron: int) -> tuple[int | None, float | None]:
    """A neuron's rank and score in a set: as listed, else from the set's scores (1 + the number of
    higher scores), else (None, None) (outside the candidate layers, or no scores beside the set)."""
    for rank, (l, n, score) in enumerate(s.top, 1):
        if (l, n) == (layer, neuron):
            return rank, score
    if scores is None or not torch.isfinite(scores[layer, neuron]):
        return None, None
    value = scores[layer, neuron]
    return 1 + int((scores[torch.isfinite(scores)] > value).sum()), float(value)


def _eta2(act: torch.Tensor, langs: Sequence[str], targets: set[str | None]) -> dict[str, torch.Tensor]:
    """eta^2 [K] of each card's activation, target language vs the rest, for every target that has
    sentences and is not the only language."""
    out = {}
    for target in targets:
        labels = torch.tensor([int(lang == target) for lang in langs])
        if target is not None and 0 < int(labels.sum()) < len(labels):
            stats = GroupStats(2, (act.shape[1],))
            stats.update(act, labels)
            out[target] = stats.eta_squared()
    return out


def _one_pass(
    lm: LoadedModel,
    texts: Sequence[str],
    cards: Sequence[Neuron],
    centroids: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    progress: bool,
) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[str, torch.Tensor]]:
    """One forward pass over `texts`: each card's activation per sentence [N, K], the mean state
    per card layer [d], and per set with a centroid the cosine change of each sentence when each
    card's neuron alone is deactivated, `cos(h - a_i u_i, c) - cos(h, c)` [N, K] float64 (h and c
    taken from the set's origin: its centred score's reference mean, else 0)."""
    layers = sorted({layer for layer, _ in cards})
    at = {l: torch.tensor([k for k, (layer, _) in enumerate(cards) if layer == l]) for l in layers}
    index = {l: torch.tensor([cards[k][1] for k in at[l].tolist()]) for l in layers}
    values = {l: lm.adapter.value_vectors(lm.model, l) for l in layers}
    scorers = {
        (name, l): LayerScorer(
            values[l][index[l].to(values[l].device)], lm.adapter.post_norm_gain(lm.model, l), c[l] - o[l]
        )
        for name, (c, o) in centroids.items()
        for l in layers
    }
    origins = {name: o.to(lm.device) for name, (_, o) in centroids.items()}
    act = torch.zeros(len(texts), len(cards))
    sums = {l: torch.zeros(lm.hidden_size, dtype=torch.float64) for l in layers}
    deltas = {name: torch.full((len(texts), len(cards)), float("nan"), dtype=torch.float64) for name in centroids}
    for batch in capture(lm, texts, ("h", "act", "scale"), layers, batch_size, desc="neuron pages", progress=progress):
        rows = batch.index[:, None]
        for l in layers:
            a = batch["act"][l][:, index[l].to(lm.device)]
            act[rows, at[l]] = a.cpu()
            sums[l] += batch["h"][l].double().sum(0).cpu()
            for name in centroids:  # deactivating neuron i removes a_i u_i: the score's closed form with -a_i
                h = batch["h"][l] - origins[name][l]
                deltas[name][rows, at[l]] = scorers[name, l].deltas(h, -a, batch["scale"][l]).cpu()
    return act, {l: s / len(texts) for l, s in sums.items()}, deltas
