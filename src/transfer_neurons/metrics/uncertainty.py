"""Uncertainty (DESIGN.md 3.8): bootstrap intervals over evaluation units, paired and unpaired
permutation tests, and the verdict of a claim. Plain functions over arrays; no model code.

The model is never run again: every function resamples per-unit values that an analysis already
has (mutual kNN is recomputed on resampled pairs by `metrics.latent.mknn_resamples`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LEVEL = 0.95  # coverage of every interval
ALPHA = 0.05  # significance level of a verdict
PERMUTATIONS = 10_000  # sign flips / label shuffles of a permutation test
CHUNK = 1024  # permutations computed at once


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] indices drawn with replacement (seeded): row b is bootstrap resample b."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over axis 0 of bootstrap statistics (NaN samples ignored)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_means(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Means of `values` [n, ...] over each resample of `index` [n_boot, n]: [n_boot, ...]."""
    values = np.asarray(values, dtype=np.float64)
    return values[index].mean(axis=1)


@dataclass(frozen=True)
class Estimate:
    """A number with its 95 % interval (None when bootstrap is off) and, for a compared condition,
    its difference from the random baseline with that difference's interval and paired p-value,
    or, for a random baseline, the value of each seed's draw."""

    value: float
    ci: tuple[float, float] | None = None
    p_vs_random: float | None = None
    effect_vs_random: Estimate | None = None
    seeds: tuple[int, ...] | None = None
    per_seed: tuple[float, ...] | None = None

    @property
    def spread(self) -> float | None:
        """Standard deviation of the per-seed values (None with fewer than two seeds)."""
        if self.per_seed is None or len(self.per_seed) < 2:
            return None
        return float(np.std(self.per_seed, ddof=1))

    def to_json(self) -> dict[str, Any]:
        """`{"value", "ci"}`, plus `p_vs_random` and `effect_vs_random`, or `seeds`, `per_seed` and `sd`."""
        out: dict[str, Any] = {"value": self.value, "ci": None if self.ci is None else list(self.ci)}
        if self.effect_vs_random is not None:
            out["effect_vs_random"] = self.effect_vs_random.to_json()
        if self.p_vs_random is not None:
            out["p_vs_random"] = self.p_vs_random
        if self.seeds is not None:
            out |= {"seeds": list(self.seeds), "per_seed": list(self.per_seed or ()), "sd": self.spread}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Estimate:
        effect = data.get("effect_vs_random")
        seeds, per_seed = data.get("seeds"), data.get("per_seed")
        return cls(
            value=float(data["value"]),
            ci=None if data.get("ci") is None else (float(data["ci"][0]), float(data["ci"][1])),
            p_vs_random=data.get("p_vs_random"),
            effect_vs_random=None if effect is None else cls.from_json(effect),
            seeds=None if seeds is None else tuple(seeds),
            per_seed=None if per_seed is None else tuple(per_seed),
        )

    def text(self, digits: int = 3) -> str:
        """'0.137 [0.129, 0.146]' (the interval only when there is one)."""
        if self.ci is None:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.ci[0]:.{digits}f}, {self.ci[1]:.{digits}f}]"


def interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = percentile_interval(np.asarray(samples, dtype=np.float64))
    return float(low), float(high)


def mean_estimate(values: Sequence[float] | np.ndarray, n_boot: int, seed: int) -> Estimate:
    """The mean of per-unit `values` with its percentile bootstrap interval over the units."""
    values = np.asarray(values, dtype=np.float64)
    if n_boot == 0 or len(values) == 0:
        return Estimate(float(values.mean()) if len(values) else float("nan"))
    return Estimate(
        float(values.mean()), interval(bootstrap_means(values, resample_indices(len(values), n_boot, seed)))
    )


def paired_permutation_p(differences: Sequence[float] | np.ndarray, seed: int, n_perm: int = PERMUTATIONS) -> float:
    """Two-sided p-value of 'mean difference = 0' for paired units: the sign of each unit's
    difference is flipped at random (exact under a symmetric null); (1 + hits) / (1 + n_perm)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0 or not np.any(d):
        return 1.0
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, len(d)))
    observed = abs(d.mean())
    hits = int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (1 + hits) / (1 + n_perm)


def permutation_p(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, seed: int, n_perm: int = PERMUTATIONS
) -> float:
    """Two-sided p-value of 'mean(a) = mean(b)' for two independent samples (labels shuffled)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = np.concatenate([a, b])
    if len(a) == 0 or len(b) == 0 or np.ptp(pooled) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(a.mean() - b.mean())
    hits = 0
    for start in range(0, n_perm, CHUNK):
        shuffled = rng.permuted(np.tile(pooled, (min(CHUNK, n_perm - start), 1)), axis=1)
        hits += int((np.abs(shuffled[:, : len(a)].mean(1) - shuffled[:, len(a) :].mean(1)) >= observed - 1e-12).sum())
    return (1 + hits) / (1 + n_perm)


def paired_estimate(
    compared: Sequence[float] | np.ndarray, random: Sequence[float] | np.ndarray, n_boot: int, seed: int
) -> Estimate:
    """The compared condition's mean with its interval, its difference from the random condition on
    the same units (interval from the same resamples) and the paired permutation p-value."""
    compared, random = np.asarray(compared, dtype=np.float64), np.asarray(random, dtype=np.float64)
    base = mean_estimate(compared, n_boot, seed)
    effect = mean_estimate(compared - random, n_boot, seed)
    return Estimate(base.value, base.ci, paired_permutation_p(compared - random, seed), effect)


def unpaired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_boot: int, seed: int
) -> Estimate:
    """mean(a) - mean(b) of two independent samples, each resampled on its own, with the
    permutation p-value in `p_vs_random` (b plays the reference)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    value = float(a.mean() - b.mean())
    ci = None
    if n_boot:
        ci = interval(
            bootstrap_means(a, resample_indices(len(a), n_boot, seed))
            - bootstrap_means(b, resample_indices(len(b), n_boot, seed + 1))
        )
    return Estimate(value, ci, permutation_p(a, b, seed))


def random_estimate(
    values: np.ndarray, assignment: np.ndarray, seeds: Sequence[int], n_boot: int, seed: int
) -> Estimate:
    """A multi-seed random baseline whose draws were spread over the units (`assignment[i]` is the
    draw of unit i): the mean over all units with its interval, and each draw's mean over its units."""
    base = mean_estimate(values, n_boot, seed)
    values = np.asarray(values, dtype=np.float64)
    per_seed = tuple(float(values[assignment == s].mean()) for s in range(len(seeds)) if np.any(assignment == s))
    used = tuple(int(seeds[s]) for s in range(len(seeds)) if np.any(assignment == s))
    return Estimate(base.value, base.ci, seeds=used, per_seed=per_seed)


# mutual kNN ---------------------------------------------------------------------------------------


def _gram(states: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(states.double(), dim=-1)
    return unit @ unit.t()


def mutual_knn_rows(a: torch.Tensor, b: torch.Tensor, k: int) -> np.ndarray:
    """Each row's |kNN_a(i) & kNN_b(i)| / k (their mean is `metrics.latent.mutual_knn`): the per-pair
    values of mutual kNN (resampled in `metrics.latent.mknn_resamples`)."""
    n = a.shape[0]
    masks = []
    for gram in (_gram(a), _gram(b)):
        gram.fill_diagonal_(float("-inf"))
        masks.append(torch.zeros(n, n, dtype=torch.bool).scatter_(1, gram.topk(k, dim=1).indices, True))
    return ((masks[0] & masks[1]).sum(1).double() / k).numpy()


# verdicts -----------------------------------------------------------------------------------------

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def verdict(effect: float, ci: tuple[float, float] | None, p: float | None, sign: int, alpha: float = ALPHA) -> str:
    """'holds' when the effect has the claimed sign, its interval excludes 0 on that side and
    p < alpha; 'does not hold' when the interval excludes 0 on the other side; else 'inconclusive'."""
    if ci is None or p is None or not np.isfinite(effect):
        return INCONCLUSIVE
    low, high = (ci[0], ci[1]) if sign > 0 else (-ci[1], -ci[0])
    if sign * effect > 0 and low > 0 and p < alpha:
        return HOLDS
    if high < 0:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


@dataclass
class Finding:
    """One row of the Findings table: a claim of the paper measured on one language."""

    claim: str  # short id, e.g. "middle_peak"
    text: str  # the claim in words
    lang: str
    effect: float
    ci: tuple[float, float] | None
    p: float | None
    n: int
    units: str  # what n counts, e.g. "test pairs"
    sign: int  # the claimed sign of the effect
    source: str  # the step folder it was read from
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        self.verdict = verdict(self.effect, self.ci, self.p, self.sign)

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "text": self.text,
            "lang": self.lang,
            "verdict": self.verdict,
            "effect": self.effect,
            "ci": None if self.ci is None else list(self.ci),
            "p": self.p,
            "n": self.n,
            "units": self.units,
            "claimed_sign": "+" if self.sign > 0 else "-",
            "source": self.source,
        }
