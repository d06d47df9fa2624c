"""Calibration by simulation: the package's intervals and tests on simulated data with a known answer
(docs/method.md section 8). The tests run it at fast sizes, benchmarks/bench_calibration.py at full ones.

The simulated world follows the audit that found the old procedures miscalibrated: a latent z in
R^16 per sentence pair, English states z A_l + e and L2 states z B_l + f in R^32 at each of 6
layers (noise sd 1; in the "peak" world the middle layers have noise 0.8, so alignment peaks there),
k = 5 neighbours at n = 25 and 10 above. A condition adds tau g to the L2 states (g standard normal,
fresh per condition, pair and layer); a random draw's tau varies from draw to draw with sd
`draw_sd` (a random effect: the draws differ from each other); the deactivated set is one more
draw, shifted by `shift`. Means are simulated as unit effect + draw effect + noise. Each check
returns a `Cell`: the procedure, n, what is measured (coverage of a 95 % interval, size of a 5 %
test, false 'holds', power), the value, and the band the docs promise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from transfer_neurons.metrics import latent, neighbours
from transfer_neurons.metrics.uncertainty import (
    ALPHA,
    HOLDS,
    Estimate,
    beyond_random,
    bh_adjust,
    compare_to_draws,
    mean_estimate,
    t_test,
    verdict,
)

RANK, DIM, LAYERS = 16, 32, 6
TAU = 0.5  # the noise a condition adds to the L2 states
COVERAGE, SIZE = (0.92, 0.98), (0.03, 0.07)  # the bands of a 95 % interval and a 5 % test


def k_for(n: int) -> int:
    """k of the simulation: 5 at n = 25, 10 from n = 100 (as the audit)."""
    return 5 if n < 100 else 10


@dataclass(frozen=True)
class Cell:
    """One measured property of one procedure at one n."""

    check: str
    n: int
    measure: str  # "coverage", "size", "false holds", "power"
    value: float
    reps: int
    band: tuple[float, float] | None = None  # where the value should lie; None: reported only
    reference: float | None = None  # power: the ideal test's

    @property
    def ok(self) -> bool:
        if self.band is None:
            return self.reference is None or self.value >= self.reference - 0.10
        return self.band[0] <= self.value <= self.band[1]

    def row(self) -> str:
        band = "" if self.band is None else f"[{self.band[0]:.0%}, {self.band[1]:.0%}]"
        ideal = "" if self.reference is None else f"ideal {self.reference:.1%}"
        return (
            f"{self.check:<34} n={self.n:<4} {self.measure:<12} {self.value:6.1%}  {band or ideal:<14} {self.reps} reps"
        )


class World:
    """Fixed per-layer maps of the latent to the English and L2 spaces (seeded); with `alike`, one map
    pair for every layer, so that the layers differ only where `peak` lowers the middle layers' noise
    (without a peak, every layer's expected mutual kNN is then the same: a true null for the peak test)."""

    def __init__(self, seed: int = 0, peak: bool = False, alike: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.maps = [(rng.normal(size=(RANK, DIM)), rng.normal(size=(RANK, DIM))) for _ in range(LAYERS)]
        self.maps = [self.maps[0]] * LAYERS if alike else self.maps
        middle, _ = latent.middle_layers(LAYERS)
        self.noise = [0.8 if peak and layer in middle else 1.0 for layer in range(LAYERS)]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """English and L2 states [LAYERS, n, DIM] of n fresh pairs."""
        z = rng.normal(size=(n, RANK)) / np.sqrt(RANK)
        scale = np.sqrt(DIM / RANK)
        en = [z @ a + s * rng.normal(size=(n, DIM)) / scale for (a, _), s in zip(self.maps, self.noise, strict=True)]
        l2 = [z @ b + s * rng.normal(size=(n, DIM)) / scale for (_, b), s in zip(self.maps, self.noise, strict=True)]
        return torch.from_numpy(np.stack(en)), torch.from_numpy(np.stack(l2))


def perturbed(l2: torch.Tensor, tau: float, rng: np.random.Generator) -> torch.Tensor:
    """L2 states under a condition that adds tau x standard normal noise."""
    return l2 + max(tau, 0.0) * torch.from_numpy(rng.normal(size=tuple(l2.shape))) / np.sqrt(DIM / RANK)


def _truth(statistic: Callable[[np.random.Generator], float], reps: int, seed: int) -> tuple[float, float]:
    """Mean and sd of a statistic over `reps` fresh samples (the known answer)."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng) for _ in range(reps)])
    return float(values.mean()), float(values.std(ddof=1))


def mknn_interval(n: int, reps: int, n_sub: int = 200, seed: int = 0) -> list[Cell]:
    """Coverage of the subsampling intervals of mean mutual kNN over layers and of one layer's curve."""
    world, k = World(seed), k_for(n)

    def statistic(rng: np.random.Generator) -> float:
        return latent.mean_mknn(*world.sample(n, rng), k)

    truth_mean, _ = _truth(statistic, 4 * reps, seed + 1)

    def first_layer(rng: np.random.Generator) -> float:
        en, l2 = world.sample(n, rng)
        return latent.mutual_knn(en[0], l2[0], k)

    truth_layer, _ = _truth(first_layer, 4 * reps, seed + 1)
    rng = np.random.default_rng(seed + 2)
    hits_mean, hits_layer = [], []
    for rep in range(reps):
        en, l2 = world.sample(n, rng)
        subsamples = neighbours.mknn_subsamples(en, l2, k, n_sub, rep)
        assert subsamples is not None
        curve = np.array([latent.mutual_knn(en[layer], l2[layer], k) for layer in range(LAYERS)])
        se = np.sqrt(neighbours.subsample_variance(*subsamples))
        mean_var = float(neighbours.subsample_variance(subsamples[0].mean(1), subsamples[1]))
        (low, high), _ = t_test(float(curve.mean()), mean_var, float("inf"))
        hits_mean.append(low <= truth_mean <= high)
        hits_layer.append(abs(curve[0] - truth_layer) <= 1.96 * se[0])
    return [
        Cell("mutual kNN, mean over layers", n, "coverage", float(np.mean(hits_mean)), reps, COVERAGE),
        Cell("mutual kNN, one layer", n, "coverage", float(np.mean(hits_layer)), reps, COVERAGE),
    ]


def middle_peak(n: int, reps: int, n_sub: int = 200, seed: int = 0) -> list[Cell]:
    """Coverage of the middle-layer peak's interval (a world with a peak) and the size of its test
    (a world without: every layer alike, the same maps and noise)."""
    k, cells = k_for(n), []
    for peak in (True, False):
        world = World(seed, peak=peak, alike=True)

        def statistic(rng: np.random.Generator, world: World = world) -> float:
            en, l2 = world.sample(n, rng)
            curve = np.array([latent.mutual_knn(en[layer], l2[layer], k) for layer in range(LAYERS)])
            return float(latent.middle_minus_outer(curve, LAYERS))

        truth, _ = _truth(statistic, 4 * reps, seed + 1) if peak else (0.0, 0.0)
        rng, outcomes = np.random.default_rng(seed + 2), []
        for rep in range(reps):
            en, l2 = world.sample(n, rng)
            curve = np.array([latent.mutual_knn(en[layer], l2[layer], k) for layer in range(LAYERS)])
            result = latent.middle_peak(curve, neighbours.mknn_subsamples(en, l2, k, n_sub, rep), n)
            assert result is not None and result.ci is not None and result.p is not None
            outcomes.append(result.ci[0] <= truth <= result.ci[1] if peak else result.p < ALPHA)
        measure, band = ("coverage", COVERAGE) if peak else ("size", SIZE)
        cells.append(Cell("middle-layer peak", n, measure, float(np.mean(outcomes)), reps, band))
    return cells


def _conditions(
    world: World, n: int, draws: int, draw_sd: float, shift: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """English states, L2 states under the deactivated set (one more draw, shifted) and under each draw."""
    en, l2 = world.sample(n, rng)
    taus = TAU + draw_sd * rng.normal(size=draws + 1)
    return en, perturbed(l2, taus[0] + shift, rng), [perturbed(l2, tau, rng) for tau in taus[1:]]


def mknn_versus_random(
    n: int, reps: int, draws: int, draw_sd: float = 0.0, shift: float = 0.0, n_boot: int = 200, seed: int = 0
) -> list[Cell]:
    """Deactivated vs random on mean mutual kNN (`metrics.latent.mknn_versus_random`): without a
    shift, the size of the test and the share of false 'holds' (a drop found where there is none,
    the claim's side); with a shift (the deactivated set adds more noise), the coverage of the
    effect's interval and the power of 'holds' beside the ideal test's (the true sd known)."""
    world, k = World(seed), k_for(n)

    def difference(rng: np.random.Generator) -> float:
        en, compared, others = _conditions(world, n, draws, draw_sd, shift, rng)
        return latent.mean_mknn(en, compared, k) - float(np.mean([latent.mean_mknn(en, d, k) for d in others]))

    truth, sd = _truth(difference, 4 * reps, seed + 1) if shift else (0.0, 0.0)
    rng, covered, rejected, holds = np.random.default_rng(seed + 2), [], [], []
    for rep in range(reps):
        en, compared, others = _conditions(world, n, draws, draw_sd, shift, rng)
        estimate, random = latent.mknn_versus_random(en, compared, others, k, n_boot, rep)
        effect, p = estimate.effect_vs_random, estimate.p_vs_random
        assert effect is not None and effect.ci is not None and p is not None
        covered.append(effect.ci[0] <= truth <= effect.ci[1])
        rejected.append(p < ALPHA)
        holds.append(_holds(estimate, random))
    name = f"mutual kNN vs random, {draws} draws" + (f", draw sd {draw_sd:g}" if draw_sd else "")
    if not shift:
        cells = [Cell(name, n, "false holds", float(np.mean(holds)), reps, (0.0, 0.05))]
        return cells + ([Cell(name, n, "size", float(np.mean(rejected)), reps, SIZE)] if not draw_sd else [])
    ideal = float(_ideal_power(truth, sd))
    return [
        Cell(name, n, "coverage", float(np.mean(covered)), reps, COVERAGE),
        Cell(name, n, "power", float(np.mean(holds)), reps, None, ideal),
    ]


def _holds(estimate: Estimate, random: Estimate, p: float | None = None) -> bool:
    """The Findings' 'holds' for a drop (`uncertainty.verdict`): p (the estimate's own unless given)
    below ALPHA, a negative effect, and with enough draws the value below every draw."""
    effect = estimate.effect_vs_random
    assert effect is not None
    p = estimate.p_vs_random if p is None else p
    return verdict(effect.value, p, -1, beyond_random(estimate, random)) == HOLDS


def _ideal_power(truth: float, sd: float) -> float:
    """P(a drop is found) by the two-sided 5 % test that knows the true sd of the difference."""
    from scipy import stats

    return float(stats.norm.cdf(-1.959963984540054 - truth / sd)) if sd > 0 else 0.0


def mean_intervals(n: int, reps: int, n_boot: int = 1000, seed: int = 0) -> list[Cell]:
    """Coverage of the interval of a mean: Wilson for a Bernoulli(0.85) share, BCa for a skewed score
    (0 with probability 0.6, else Beta(2, 5): like token F1)."""
    rng = np.random.default_rng(seed)
    share, score = [], []
    truth = 0.4 * 2 / 7
    for rep in range(reps):
        binary = (rng.random(n) < 0.85).astype(float)
        e = mean_estimate(binary, n_boot, rep)
        share.append(e.ci is not None and e.ci[0] <= 0.85 <= e.ci[1])
        values = np.where(rng.random(n) < 0.6, 0.0, rng.beta(2, 5, size=n))
        e = mean_estimate(values, n_boot, rep)
        score.append(e.ci is not None and e.ci[0] <= truth <= e.ci[1])
    return [
        Cell("share, Wilson", n, "coverage", float(np.mean(share)), reps, COVERAGE),
        Cell("mean score, BCa", n, "coverage", float(np.mean(score)), reps, COVERAGE),
    ]


def _means(
    n: int, draws: int, draw_sd: float, shift: float, binary: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit values of the deactivated set [n] and of each draw [S, n]: unit effect + draw effect
    + noise (as the probability of a 0/1 outcome when `binary`); the deactivated set is one more draw."""
    unit = rng.normal(size=n)
    effects = draw_sd * rng.normal(size=draws + 1)
    effects[0] += shift
    latent_values = 0.5 * unit[None, :] + effects[:, None] + 0.5 * rng.normal(size=(draws + 1, n))
    if binary:
        latent_values = (rng.random((draws + 1, n)) < 1 / (1 + np.exp(-latent_values))).astype(float)
    return latent_values[0], latent_values[1:]


def means_versus_random(
    n: int, reps: int, draws: int, draw_sd: float = 0.0, binary: bool = False, seed: int = 0
) -> list[Cell]:
    """A mean under the deactivated set vs S draws (`uncertainty.compare_to_draws`) without a true
    difference: size, false 'holds' (the claim's side), and coverage of the effect's interval (0)."""
    rng, rejected, holds, covered = np.random.default_rng(seed), [], [], []
    for rep in range(reps):
        compared, table = _means(n, draws, draw_sd, 0.0, binary, rng)
        estimate, random = compare_to_draws(compared, table, range(draws), 200, rep)
        effect, p = estimate.effect_vs_random, estimate.p_vs_random
        assert effect is not None and effect.ci is not None and p is not None
        rejected.append(p < ALPHA)
        holds.append(_holds(estimate, random))
        covered.append(effect.ci[0] <= 0.0 <= effect.ci[1])
    name = f"{'share' if binary else 'mean'} vs random, {draws} draws" + (f", draw sd {draw_sd:g}" if draw_sd else "")
    return [
        Cell(name, n, "size", float(np.mean(rejected)), reps, SIZE),
        Cell(name, n, "false holds", float(np.mean(holds)), reps, (0.0, 0.05)),
        Cell(name, n, "coverage", float(np.mean(covered)), reps, COVERAGE),
    ]


def findings(reps: int, rows: int = 32, n: int = 25, draws: int = 10, seed: int = 0) -> Cell:
    """P(at least one false 'holds') in a Findings table of `rows` null rows, p adjusted by
    Benjamini-Hochberg (each row a share vs random with draws that differ, sd 0.2)."""
    rng, any_false = np.random.default_rng(seed), []
    for rep in range(reps):
        pairs = []
        for row in range(rows):
            compared, table = _means(n, draws, 0.2, 0.0, True, rng)
            pairs.append(compare_to_draws(compared, table, range(draws), 200, rep * rows + row))
        adjusted = bh_adjust([estimate.p_vs_random for estimate, _ in pairs])
        any_false.append(any(_holds(*pair, p) for pair, p in zip(pairs, adjusted, strict=True)))
    return Cell(f"Findings, {rows} null rows (BH)", n, "any false holds", float(np.mean(any_false)), reps, (0.0, 0.05))
