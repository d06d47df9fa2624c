"""Perplexity with its bootstrap interval over sentences, and paired changes (after minus before) of
a measure on the same units, for fine-tuning (docs/method.md section 12). Plain functions over arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transfer_neurons.artifacts.codec import JsonValue
from transfer_neurons.metrics.uncertainty import Estimate, interval, paired_estimate, paired_permutation_p


@dataclass(frozen=True)
class Change(JsonValue):
    """After minus before on the same units: the difference, its 95 % interval (None without
    bootstrap) and the paired sign-flip permutation p-value."""

    value: float
    ci: tuple[float, float] | None
    p: float

    def text(self, digits: int = 3) -> str:
        """'+0.012 [0.004, 0.020] (p = 0.003)'."""
        bounds = "" if self.ci is None else f" [{self.ci[0]:.{digits}f}, {self.ci[1]:.{digits}f}]"
        return f"{self.value:+.{digits}f}{bounds} (p = {self.p:.3g})"


def resampled_perplexity(nll: np.ndarray, tokens: np.ndarray, index: np.ndarray) -> np.ndarray:
    """exp(sum NLL / sum tokens) over the sentences of each resample `index` [n_boot, n]: [n_boot]."""
    nll, tokens = np.asarray(nll, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    return np.exp(nll[index].sum(1) / tokens[index].sum(1))


def perplexity(nll: np.ndarray, tokens: np.ndarray, index: np.ndarray) -> Estimate:
    """Perplexity, exp of the mean token NLL (`nll` [n]: each sentence's summed NLL, `tokens` [n]: its
    predicted tokens), with its percentile interval over the resamples of sentences `index`
    [n_boot, n] (no interval without resamples)."""
    value = float(np.exp(np.sum(nll, dtype=np.float64) / np.sum(tokens, dtype=np.float64)))
    if len(index) == 0:
        return Estimate(value)
    return Estimate(value, interval(resampled_perplexity(nll, tokens, index)))


def perplexity_change(
    before: np.ndarray, after: np.ndarray, tokens: np.ndarray, index: np.ndarray, seed: int
) -> Change:
    """Perplexity after minus before on the same sentences (summed NLL per sentence each), its interval
    from the same resamples, p from the per-sentence mean-NLL differences."""
    tokens = np.asarray(tokens, dtype=np.float64)
    value = perplexity(after, tokens, index[:0]).value - perplexity(before, tokens, index[:0]).value
    ci = None
    if len(index):
        ci = interval(resampled_perplexity(after, tokens, index) - resampled_perplexity(before, tokens, index))
    differences = (np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)) / tokens
    return Change(value, ci, paired_permutation_p(differences, seed))


def mean_change(before: np.ndarray, after: np.ndarray, n_boot: int, seed: int) -> Change:
    """Mean of per-unit `after - before` with its bootstrap interval and paired p (`paired_estimate`)."""
    estimate = paired_estimate(after, before, n_boot, seed)
    effect = estimate.effect_vs_random
    assert effect is not None and estimate.p_vs_random is not None
    return Change(effect.value, effect.ci, estimate.p_vs_random)


def resampled_change(
    before: np.ndarray, after: np.ndarray, before_boot: np.ndarray, after_boot: np.ndarray, seed: int
) -> Change:
    """A change whose statistic is recomputed on each resample rather than averaged over units (mutual
    kNN): the mean of per-unit `after - before`, its interval from the resampled statistics
    `after_boot - before_boot` [n_boot] (none when empty) and the paired p of the per-unit values."""
    difference = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    ci = interval(np.asarray(after_boot) - np.asarray(before_boot)) if len(before_boot) else None
    return Change(float(difference.mean()), ci, paired_permutation_p(difference, seed))
