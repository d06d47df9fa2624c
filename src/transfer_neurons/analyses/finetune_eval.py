"""The measuring side of fine-tuning (docs/method.md section 12): on held-out data, before and after, L2 and
English perplexity, mutual kNN and the centred gap of the pairs (as `ablate` computes them) and QA
F1, each with its interval over the units and the paired change after minus before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from transfer_neurons.analyses import qa as qa_analysis
from transfer_neurons.analyses.ablate import plain_summary
from transfer_neurons.analyses.finetune_train import encode, sentence_nll
from transfer_neurons.analyses.latent import PairMeasures, PairStates, capture_pair
from transfer_neurons.analyses.qa import QAItem
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.metrics import latent, neighbours
from transfer_neurons.metrics.perplexity import Change, mean_change, perplexity, perplexity_change
from transfer_neurons.metrics.uncertainty import Estimate, resample_indices, t_test
from transfer_neurons.model.loading import LoadedModel

PERPLEXITIES = {"l2_perplexity": "l2", "en_perplexity": "en"}
LATENT = ("mean_mknn", "mean_gap", "middle_gap")  # as in ablate's summary


@dataclass
class EvalSet:
    """Held-out data: the L2 sentences, the pairs they come from (None for a .txt file: no English
    perplexity and no alignment) and the questions of the built-in QA set (None: not asked for, or
    the set lacks the language)."""

    lang: str
    l2: list[str]
    pairs: ParallelData | None
    questions: list[QAItem] | None = None


class Settings(Protocol):
    """How to measure (a `FinetuneConfig`): mutual-kNN neighbours, bootstrap resamples and their
    seed, sentences per forward pass, tokens per sentence."""

    k: int
    bootstrap: int
    seed: int
    batch_size: int
    max_length: int


@dataclass
class Measured:
    """One state of the model measured on an EvalSet: per sentence its summed NLL and predicted tokens
    (`nll[side]`, side l2 / en), the pairs' latent measures and the per-question F1 (None when not
    measured)."""

    nll: dict[str, tuple[np.ndarray, np.ndarray]]
    pairs: PairMeasures | None
    f1: np.ndarray | None
    qa_f1: Estimate | None
    states: PairStates | None = None


def measure(lm: LoadedModel, data: EvalSet, settings: Settings, progress: bool = False) -> Measured:
    """Perplexity inputs, latent measures and QA of `lm` as it is now, on `data`."""
    sides = {"l2": data.l2, **({"en": data.pairs.en} if data.pairs is not None else {})}
    nll = {
        side: sentence_nll(
            lm, encode(lm, texts, settings.max_length), settings.batch_size, f"perplexity ({side})", progress
        )
        for side, texts in sides.items()
    }
    pairs, states = None, None
    if data.pairs is not None:
        states = capture_pair(lm, data.pairs, None, batch_size=settings.batch_size, progress=progress)
        pairs = states.measure(settings.k, None, settings.bootstrap, settings.seed)
    f1, qa_f1 = None, None
    if data.questions:
        config = qa_analysis.QAConfig(bootstrap=settings.bootstrap, seed=settings.seed, batch_size=settings.batch_size)
        result = qa_analysis.run(lm, data.questions, None, config)
        f1 = np.array([row["f1"] for row in result.rows], dtype=np.float64)
        qa_f1 = result.conditions["normal"].f1
    return Measured(nll, pairs, f1, qa_f1, states)


def mknn_change(english: torch.Tensor, before: torch.Tensor, after: torch.Tensor, settings: Settings) -> Change:
    """Mean mutual kNN over layers after minus before on the same pairs (the English side unchanged):
    interval and p from one normal test whose variance is that of the randomization distribution
    that swaps each pair's two states (`metrics.neighbours.mknn_swaps`; no interval without resamples)."""
    value = latent.mean_mknn(english, after, settings.k) - latent.mean_mknn(english, before, settings.k)
    if settings.bootstrap == 0:
        return Change(value, None, float("nan"))
    swaps = neighbours.mknn_swaps(english, after, before, settings.k, settings.bootstrap, settings.seed)
    ci, p = t_test(value, float(np.var(swaps, ddof=1)), float("inf"))
    return Change(value, ci, p)


def compare(
    before: Measured, after: Measured, settings: Settings, middle: int
) -> tuple[dict[str, dict[str, Estimate]], dict[str, Change]]:
    """Each measure before and after with its interval (`summary[condition][metric]`) and its paired
    change after minus before (`change[metric]`); metrics not measured are left out."""
    summary: dict[str, dict[str, Estimate]] = {"before": {}, "after": {}}
    change: dict[str, Change] = {}
    for metric, side in PERPLEXITIES.items():
        if side not in before.nll:
            continue
        (nll_before, tokens), (nll_after, _) = before.nll[side], after.nll[side]
        index = resample_indices(len(tokens), settings.bootstrap, settings.seed)
        summary["before"][metric] = perplexity(nll_before, tokens, index)
        summary["after"][metric] = perplexity(nll_after, tokens, index)
        change[metric] = perplexity_change(nll_before, nll_after, tokens, index, settings.seed)
    if before.pairs is not None and after.pairs is not None and before.states is not None and after.states is not None:
        english, n_boot, seed = before.states.en["h"], settings.bootstrap, settings.seed
        for name, measured in (("before", before), ("after", after)):
            assert measured.states is not None and measured.pairs is not None
            l2 = measured.states.l2["h"]
            summary[name] |= plain_summary(english, l2, measured.pairs, settings.k, None, n_boot, seed, middle)
        change["mean_mknn"] = mknn_change(english, before.states.l2["h"], after.states.l2["h"], settings)
        b, a = before.pairs, after.pairs
        change["mean_gap"] = mean_change(
            b.units["gap"].mean(0), a.units["gap"].mean(0), settings.bootstrap, settings.seed
        )
        change["middle_gap"] = mean_change(
            b.units["gap"][middle], a.units["gap"][middle], settings.bootstrap, settings.seed
        )
    if before.f1 is not None and after.f1 is not None and before.qa_f1 is not None and after.qa_f1 is not None:
        summary["before"]["qa_f1"], summary["after"]["qa_f1"] = before.qa_f1, after.qa_f1
        change["qa_f1"] = mean_change(before.f1, after.f1, settings.bootstrap, settings.seed)
    return summary, change
