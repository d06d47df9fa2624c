"""Uncertainty (docs/method.md section 8): intervals over evaluation units and tests of a condition
against a random baseline whose draws are a random effect. Plain functions over arrays; no model code.

- A mean of per-unit values: Wilson's interval for 0/1 values, else the BCa bootstrap (scipy).
- A condition against S random draws, each measured on every unit: the draws are a random effect
  (`random_effect`): the difference's variance is the unit-sampling part plus (1 + 1/S) times the
  between-draw part, and its interval and p-value both come from that one variance (t, Satterthwaite
  degrees of freedom). Means use `compare_to_draws`; statistics that are not means (mutual kNN,
  eta^2 shares) give the unit-sampling part from their own procedure.
- The verdict of a claim: its p-value adjusted by Benjamini-Hochberg over every claim of a table.

Every procedure is checked by simulation against a known answer (`transfer_neurons.calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

LEVEL = 0.95  # coverage of every interval
ALPHA = 0.05  # significance level of a verdict (after the false-discovery-rate adjustment)
PERMUTATIONS = 10_000  # sign flips of a paired permutation test


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


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's score interval of a proportion (scipy's binomtest)."""
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def bca_interval(values: np.ndarray, n_boot: int, seed: int, level: float = LEVEL) -> tuple[float, float]:
    """The BCa bootstrap interval of the mean (scipy.stats.bootstrap); a point for constant values."""
    values = np.asarray(values, dtype=np.float64)
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,), np.mean, n_resamples=n_boot, confidence_level=level, method="BCa", **seeded(seed)
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seeded(seed: int) -> dict[str, Any]:
    """scipy's seed option: `rng` from scipy 1.15, `random_state` before it."""
    import inspect

    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1 (a proportion's units)."""
    return bool(np.isin(values, (0.0, 1.0)).all())


def mean_estimate(values: Sequence[float] | np.ndarray, n_boot: int, seed: int) -> Estimate:
    """The mean of per-unit `values` with its 95 % interval over the units: Wilson's for 0/1 values,
    BCa from `n_boot` bootstrap resamples otherwise (none when `n_boot` is 0)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"))
    value = float(values.mean())
    if n_boot == 0 or len(values) < 2:
        return Estimate(value)
    if is_binary(values):
        return Estimate(value, wilson_interval(int(values.sum()), len(values)))
    return Estimate(value, bca_interval(values, n_boot, seed))


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


def paired_estimate(
    compared: Sequence[float] | np.ndarray, random: Sequence[float] | np.ndarray, n_boot: int, seed: int
) -> Estimate:
    """The compared condition's mean with its interval, its difference from the random condition on
    the same units (interval from the same resamples) and the paired permutation p-value."""
    compared, random = np.asarray(compared, dtype=np.float64), np.asarray(random, dtype=np.float64)
    base = mean_estimate(compared, n_boot, seed)
    effect = mean_estimate(compared - random, n_boot, seed)
    return Estimate(base.value, base.ci, paired_permutation_p(compared - random, seed), effect)


def t_test(value: float, variance: float, df: float, level: float = LEVEL) -> tuple[tuple[float, float], float]:
    """The interval `value -/+ t * sqrt(variance)` and the two-sided p-value of 'the effect is 0', from
    one t distribution with `df` degrees of freedom (infinite: normal): interval and p always agree."""
    se = float(np.sqrt(max(variance, 0.0)))
    dist = stats.norm if not np.isfinite(df) else stats.t(df)
    half = float(dist.ppf(0.5 + level / 2)) * se
    p = 1.0 if se == 0 and value == 0 else (0.0 if se == 0 else float(2 * dist.sf(abs(value) / se)))
    return (value - half, value + half), p


@dataclass(frozen=True)
class RandomEffect:
    """A statistic whose variance has a unit-sampling part `unit_var` (`unit_df` degrees of freedom)
    and a part from S random draws, `weight` x `draw_var` (the variance between draws beyond their
    unit noise `draw_noise`; 0 with one draw): (1 + 1/S) for a condition minus the draws' mean, 1/S
    for the draws' mean itself. Degrees of freedom by Satterthwaite, the draw part estimated from the
    draws' mean square (draw_var + draw_noise, S - 1 degrees of freedom): when the noise is a large
    part of the draws' spread, their difference is less certain than its S - 1 suggest. At least
    the smaller of the parts' degrees of freedom (a compared condition without unit noise would
    otherwise get df near 0)."""

    value: float
    unit_var: float
    unit_df: float
    draw_var: float
    draws: int
    weight: float
    draw_noise: float = 0.0

    @property
    def variance(self) -> float:
        return self.unit_var + self.weight * self.draw_var

    @property
    def df(self) -> float:
        part = self.weight * self.draw_var
        if part <= 0 or self.draws < 2:
            return self.unit_df
        unit = 0.0 if not np.isfinite(self.unit_df) else self.unit_var**2 / self.unit_df
        mean_square = self.weight * (self.draw_var + self.draw_noise)
        found = float(self.variance**2 / (unit + mean_square**2 / (self.draws - 1)))
        return max(found, min(self.unit_df, self.draws - 1))  # never below its least certain part's

    def estimate(self) -> Estimate:
        """The value with its interval; `p_vs_random` holds the p-value of the same t test."""
        ci, p = t_test(self.value, self.variance, self.df)
        return Estimate(self.value, ci, p)


def random_effect(
    value: float,
    unit_var: float,
    unit_df: float,
    draw_values: Sequence[float] | np.ndarray,
    draw_noise: float,
    contrast: bool = True,
) -> RandomEffect:
    """`value` (a compared condition minus the mean of S random draws when `contrast`, else the draws'
    mean) with `draw_values` [S], the draws' statistics, and `draw_noise`, the unit-sampling variance of
    one draw's statistic around the others: their spread beyond it is the between-draw variance,
    estimated as max(0, s^2 - draw_noise)."""
    draw_values = np.asarray(draw_values, dtype=np.float64)
    draws = len(draw_values)
    draw_var = 0.0 if draws < 2 else max(0.0, float(draw_values.var(ddof=1)) - draw_noise)
    weight = (1 + 1 / draws) if contrast else 1 / draws
    return RandomEffect(value, unit_var, unit_df, draw_var, draws, weight, draw_noise)


def compare_to_draws(
    compared: Sequence[float] | np.ndarray, draws: np.ndarray, seeds: Sequence[int], n_boot: int, seed: int
) -> tuple[Estimate, Estimate]:
    """Per-unit values of a compared condition [n] and of S random draws [S, n] (the same units):
    the compared condition's mean with its interval and its difference from the draws' mean
    (`effect_vs_random`, interval and `p_vs_random` from `random_effect`); the random baseline's mean
    over draws and units with its interval (unit part plus between-draw part / S) and each draw's mean.
    No intervals and no p when `n_boot` is 0."""
    y = np.asarray(compared, dtype=np.float64)
    table = np.asarray(draws, dtype=np.float64).reshape(-1, len(y))
    s, n = table.shape
    per_draw = table.mean(axis=1)
    base = mean_estimate(y, n_boot, seed)
    difference = y - table.mean(axis=0)
    if n_boot == 0 or n < 2:
        random = Estimate(float(table.mean()), seeds=tuple(seeds), per_seed=tuple(per_draw.tolist()))
        return Estimate(base.value, base.ci, None, Estimate(float(difference.mean()))), random
    residual = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0) + table.mean()
    noise = float((residual**2).sum() / ((s - 1) * (n - 1))) / n if s > 1 else 0.0  # one draw's mean, unit part
    contrast = random_effect(float(difference.mean()), float(difference.var(ddof=1)) / n, n - 1, per_draw, noise)
    unit_means = table.mean(axis=0)
    pooled = random_effect(float(table.mean()), float(unit_means.var(ddof=1)) / n, n - 1, per_draw, noise, False)
    random = Estimate(pooled.value, pooled.estimate().ci, seeds=tuple(seeds), per_seed=tuple(per_draw.tolist()))
    tested = contrast.estimate()
    return Estimate(base.value, base.ci, tested.p_vs_random, replace(tested, p_vs_random=None)), random


def bh_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (scipy's false_discovery_control) of the given ones;
    None stays None and does not count as a test."""
    present = [k for k, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    adjusted: list[float | None] = [None] * len(p_values)
    if present:
        values = stats.false_discovery_control([float(p_values[k]) for k in present], method="bh")  # type: ignore[arg-type]
        for k, value in zip(present, np.atleast_1d(values), strict=True):
            adjusted[k] = float(value)
    return adjusted


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


RANK_DRAWS = 19  # from this many random draws, 'beyond every draw' is a test at 1 / (S + 1) <= 5 %


def beyond_draws(value: float, draws: Sequence[float] | None, effect: float) -> bool | None:
    """With at least RANK_DRAWS random draws, whether `value` lies beyond every draw's value on the
    side of `effect`: a Monte Carlo rank test of level 1 / (S + 1), exact when the compared set is
    exchangeable with random sets whatever the draws' distribution (the t of `random_effect` assumes
    it normal, and a skewed one doubles its one-sided error at large n). None with fewer draws, where
    the rank test cannot reach 5 %."""
    if draws is None or len(draws) < RANK_DRAWS or effect == 0:
        return None
    values = np.asarray(draws, dtype=np.float64)
    return bool(np.all(value < values) if effect < 0 else np.all(value > values))


def beyond_random(compared: Estimate, random: Estimate) -> bool | None:
    """`beyond_draws` of a compared condition's Estimate (its value and `effect_vs_random`) against the
    random baseline's Estimate (its draws' values, `per_seed`)."""
    assert compared.effect_vs_random is not None, "no comparison with the random baseline"
    return beyond_draws(compared.value, random.per_seed, compared.effect_vs_random.value)


def verdict(
    effect: float, p_adjusted: float | None, sign: int, beyond: bool | None = None, alpha: float = ALPHA
) -> str:
    """'holds' when the effect has the claimed sign and its adjusted p < alpha, 'does not hold' when
    it has the other sign with adjusted p < alpha, else 'inconclusive' (the interval and p come from
    one test, so an unadjusted p < alpha means the interval excludes 0). With enough random draws
    (`beyond_draws` not None) both also need the compared value beyond every draw: the intersection
    of two tests errs at most as often as the less erring one (Berger 1982)."""
    if p_adjusted is None or not np.isfinite(effect) or p_adjusted >= alpha or effect == 0 or beyond is False:
        return INCONCLUSIVE
    return HOLDS if sign * effect > 0 else DOES_NOT_HOLD


@dataclass(frozen=True)
class Finding:
    """One row of the Findings table: a claim of the paper measured on one language; its verdict
    reads `p_adjusted`, the p-value adjusted over every row of the table (`adjust`)."""

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
    p_adjusted: float | None = None
    beyond: bool | None = None  # the compared value beyond every random draw (`beyond_draws`; None: too few)

    @property
    def verdict(self) -> str:
        return verdict(self.effect, self.p_adjusted, self.sign, self.beyond)

    @property
    def stopped_by_draws(self) -> bool:
        """Whether the rank condition alone made it inconclusive (the t would have decided)."""
        return self.beyond is False and verdict(self.effect, self.p_adjusted, self.sign) != INCONCLUSIVE

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "text": self.text,
            "lang": self.lang,
            "verdict": self.verdict,
            "effect": self.effect,
            "ci": None if self.ci is None else list(self.ci),
            "p": self.p,
            "p_adjusted": self.p_adjusted,
            "beyond_draws": self.beyond,
            "n": self.n,
            "units": self.units,
            "claimed_sign": "+" if self.sign > 0 else "-",
            "source": self.source,
        }


def adjust(findings: Sequence[Finding]) -> list[Finding]:
    """The rows with their p-values adjusted by Benjamini-Hochberg over all of them (q = ALPHA)."""
    adjusted = bh_adjust([row.p for row in findings])
    return [replace(row, p_adjusted=p) for row, p in zip(findings, adjusted, strict=True)]
