"""Every way `detect` ranks neurons, behind one entry point (docs/method.md section 3): the transfer-neuron
score raw (`tn`) or centred on a multilingual reference mean (`tn-centred`), and two methods that
find language-specific neurons, for comparison:

- `lape` (Tang et al., ACL 2024): for each language of the pool, the share of its token positions
  (every real, non-padding token of its sentences, BOS included) where the activation function's
  output is > 0, streamed as counts: memory O(L * m * languages). Score for L: minus the entropy of
  those shares normalised over the languages, for neurons whose share in L exceeds the authors'
  95th-percentile bar over all shares; NaN (never ranked) for the others.
- `ap` (Kojima et al., NAACL 2024; their code pools with `on_p50`): each neuron's median over a
  sentence's real tokens of the activation function's output (`act(x W_gate)` for gated MLPs, the
  value LAPE thresholds too; `a` for plain ones) scores "this sentence is in L" against the other
  languages' sentences; the neuron's score is the average precision. The medians of every
  sentence are kept, [sentences, L, m] float32 on the CPU: memory O(sentences * L * m), e.g. 150 MB
  for 1000 sentences of Gemma-3-270M, fine for a few thousand sentences of a small model.

Both write the artifacts of `detect` (no centroids; `type` null), so every later command reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from transfer_neurons.analyses.detect import DetectConfig, Detection, candidate_layers, run_settings
from transfer_neurons.analyses.detect import run as detect_run
from transfer_neurons.analyses.pool import Sentences, check_languages, describe, file_fields, pool_parts
from transfer_neurons.choices import Method, NeuronType
from transfer_neurons.data.pairs import ParallelData, read_pairs, read_sentences
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.distributed import all_reduce_sum, is_main, rank, shard, world_size
from transfer_neurons.metrics.methods import FILTER_RATE, activation_probabilities, average_precision, lape_scores
from transfer_neurons.metrics.scoring import rank_neurons
from transfer_neurons.model.loading import LoadedModel

NEEDED_LANGUAGES = {Method.tn_centred: 3, Method.lape: 3, Method.ap: 2}  # in the pool
TOKEN_METHODS = frozenset({Method.lape, Method.ap})  # they read every token, not the last one


def store_groups(methods: Sequence[Method]) -> tuple[str, ...]:
    """The activation-store groups a fill keeps when `methods` will read the same sentences: the
    token reductions too for LAPE and AP (one pass instead of two)."""
    return ("last", "tokens") if TOKEN_METHODS & set(methods) else ("last",)


def detect_method(
    lm: LoadedModel,
    method: Method | str,
    data: ParallelData | Sentences,
    reference: Sequence[Sentences],
    config: DetectConfig,
    neuron_type: NeuronType | str = NeuronType.type1,
    source: str | None = None,
    progress: bool = False,
) -> Detection:
    """The top neurons of one method for `data`'s language (a compare-methods analysis calls this
    once per method with the same arguments).

    data: en/L2 pairs (the TN methods need them; for LAPE and AP their en side joins the pool) or
    monolingual L sentences (LAPE, AP). reference: the other languages' sentences (not used by
    `tn`). neuron_type: the type of the TN methods (LAPE and AP have none). source: the data's file name,
    recorded in the pool. Default candidate layers: the TN default of the type, every layer for
    LAPE and AP; `config.paper_compat` applies to the TN methods only."""
    method = Method(method)
    if method in (Method.tn, Method.tn_centred):
        if not isinstance(data, ParallelData):
            raise InputError(f"method {method} needs en/L2 pairs as --data (JSONL/TSV with an 'en' field)")
        pool = pool_parts(data, reference, source) if method is Method.tn_centred else None
        return detect_run(lm, data, neuron_type, config, progress, pool=pool)
    pool = pool_parts(data, reference, source)
    return (lape if method is Method.lape else ap)(lm, data.lang, pool, config, progress)


def check_pool(method: Method, lang: str, pool: Sequence[Sentences]) -> dict[str, list[str]]:
    """The pool's sentences per language; InputError when it has too few languages for `method`."""
    what = "the centred score (--center)" if method is Method.tn_centred else f"--method {method}"
    groups = check_languages(pool, NEEDED_LANGUAGES.get(method, 0), what)
    if lang not in groups:
        raise InputError(f"the pool holds no '{lang}' sentences")
    return groups


def read_data(method: Method, path: str | Path, lang: str, max_sentences: int | None) -> ParallelData | Sentences:
    """`--data` for `method`: en/L2 pairs for the TN methods; for LAPE and AP the pairs when the file
    has an `en` field (its en side joins the pool), else the L sentences (a .txt, or a JSONL/TSV field)."""
    path = Path(path)
    pairs = method in (Method.tn, Method.tn_centred)
    if not pairs and lang != "en" and path.suffix.lower() != ".txt" and path.is_file():
        pairs = "en" in file_fields(path)
    if pairs:
        return read_pairs(path, lang, max_sentences)
    return Sentences(lang, read_sentences(path, lang, max_sentences), str(path))


def lape(
    lm: LoadedModel, lang: str, pool: Sequence[Sentences], config: DetectConfig, progress: bool = False
) -> Detection:
    """LAPE scores of every neuron for `lang` (see the module docstring)."""

    def score(groups: dict[str, list[str]], layers: list[int]) -> tuple[torch.Tensor, dict]:
        p = lape_probabilities(lm, groups, layers, config.batch_size, progress)
        return lape_scores(p, list(groups).index(lang)), {"filter_rate": FILTER_RATE}

    return _language_specific(lm, Method.lape, lang, pool, config, score)


def ap(
    lm: LoadedModel, lang: str, pool: Sequence[Sentences], config: DetectConfig, progress: bool = False
) -> Detection:
    """AP scores of every neuron for `lang` (see the module docstring)."""

    def score(groups: dict[str, list[str]], layers: list[int]) -> tuple[torch.Tensor, dict]:
        sentences = [s for group in groups.values() for s in group]
        labels = torch.tensor([name == lang for name, group in groups.items() for _ in group])
        medians = sentence_medians(lm, sentences, layers, config.batch_size, progress)
        scores = average_precision(medians.reshape(len(sentences), -1), labels).reshape(len(layers), -1)
        return scores, {"pooling": "median", "n_positive": int(labels.sum()), "n_negative": int((~labels).sum())}

    return _language_specific(lm, Method.ap, lang, pool, config, score)


def _language_specific(
    lm: LoadedModel,
    method: Method,
    lang: str,
    pool: Sequence[Sentences],
    config: DetectConfig,
    score: Callable[[dict[str, list[str]], list[int]], tuple[torch.Tensor, dict]],
) -> Detection:
    """The top neurons of a language-specific-neuron method, whose `score` gives the candidate layers'
    scores (NaN: filtered out, never ranked) and its settings. LAPE filters: it refuses a ranking
    of no neuron and records how many it ranked."""
    groups = check_pool(method, lang, pool)
    layers = candidate_layers(lm, config.layers or list(range(lm.num_layers)), config.top_n)
    start = time.perf_counter()
    values, settings = score(groups, layers)
    scores = torch.full((lm.num_layers, lm.mlp_width), float("nan"))
    scores[layers] = values.float()
    top = rank_neurons(scores, layers, config.top_n)
    if method is Method.lape:
        if not top:
            raise InputError(f"no neuron passes LAPE's filter for '{lang}'; give more '{lang}' sentences or layers")
        settings["n_ranked"] = len(top)
    settings = {
        "top_n": config.top_n,
        "batch_size": config.batch_size,
        "n_sentences": describe(pool)["sizes"][lang],
        **settings,
    }
    return Detection(
        neuron_type=None,  # no type, no centroids
        lang=lang,
        model=lm.name,
        layers=layers,
        scores=scores,
        centroids=None,
        top=top,
        settings={**settings, **run_settings(lm)},
        timings={"scoring": time.perf_counter() - start},
        method=method.value,
        pool=describe(pool),
        identity=lm.identity(),
    )


def lape_probabilities(
    lm: LoadedModel, groups: dict[str, list[str]], layers: list[int], batch_size: int = 16, progress: bool = False
) -> torch.Tensor:
    """Per candidate layer, neuron and language (in `groups` order), the share of the language's
    real token positions where the activation function's output is > 0, [len(layers), m, G] float64."""
    counts = torch.zeros(len(groups), len(layers), lm.mlp_width, dtype=torch.float64, device=lm.device)
    totals = torch.zeros(len(groups), dtype=torch.float64, device=lm.device)
    show = progress and is_main()
    for g, (name, sentences) in enumerate(groups.items()):
        desc = f"activations ({name})"
        batches = capture(lm, shard(sentences), ("pos",), layers, batch_size, desc=desc, progress=show)
        for batch in batches:
            counts[g] += torch.stack([batch["pos"][layer].sum(0) for layer in layers]).double()
            totals[g] += _lengths(batch.lengths).sum()
    return activation_probabilities(all_reduce_sum(counts).cpu(), all_reduce_sum(totals).cpu())


def sentence_medians(
    lm: LoadedModel, sentences: list[str], layers: list[int], batch_size: int = 16, progress: bool = False
) -> torch.Tensor:
    """Per sentence, candidate layer and neuron, the median of the activation function's output over
    the sentence's real tokens, [n, len(layers), m] float32 on the CPU, in input order."""
    medians = torch.zeros(len(sentences), len(layers), lm.mlp_width)
    show = progress and is_main()
    batches = capture(lm, shard(sentences), ("median",), layers, batch_size, desc="activations", progress=show)
    for batch in batches:
        rows = rank() + batch.index * world_size()  # this rank's shard: every world_size-th sentence
        medians[rows] = torch.stack([batch["median"][layer] for layer in layers], 1).cpu()
    return all_reduce_sum(medians)


def _lengths(lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        raise RuntimeError("capture yielded a batch without token counts")
    return lengths
