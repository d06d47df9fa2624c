"""Intervals, tests against random draws, the false-discovery adjustment and verdicts (docs/method.md
section 8) against known truths and naive computations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from transfer_neurons.metrics import latent
from transfer_neurons.metrics import uncertainty as u


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for rep in range(200):
        sample = rng.exponential(2.0, size=60)  # skewed, true mean 2
        ci = u.mean_estimate(sample, 1000, seed=rep).ci
        assert ci is not None
        covered += ci[0] <= 2.0 <= ci[1]
    assert 180 <= covered <= 198  # 90 % - 99 %


def test_same_seed_same_interval_and_zero_resamples_no_interval():
    values = np.random.default_rng(0).normal(size=40)
    assert u.mean_estimate(values, 500, 3) == u.mean_estimate(values, 500, 3)
    assert u.mean_estimate(values, 500, 3).ci != u.mean_estimate(values, 500, 4).ci
    off = u.mean_estimate(values, 0, 3)
    assert off.ci is None and off.value == pytest.approx(values.mean())
    assert off.to_json() == {"value": off.value, "ci": None}


def test_paired_permutation_p_is_uniform_under_the_null():
    rng = np.random.default_rng(2)
    ps = np.array([u.paired_permutation_p(rng.normal(size=30), seed=k, n_perm=2000) for k in range(200)])
    counts, _ = np.histogram(ps, bins=5, range=(0, 1))
    assert np.all(np.abs(counts - 40) <= 18), counts  # 40 expected per bin of 5


def test_paired_permutation_p_is_small_under_a_clear_shift():
    rng = np.random.default_rng(3)
    compared = rng.normal(size=40) + 1.0
    random = compared - 0.8 + 0.3 * rng.normal(size=40)
    assert u.paired_permutation_p(compared - random, seed=0) < 0.01
    assert u.paired_permutation_p(np.zeros(10), seed=0) == 1.0


def test_paired_estimate_effect_is_the_mean_difference_on_the_same_units():
    rng = np.random.default_rng(5)
    compared, random = rng.normal(size=25), rng.normal(size=25)
    estimate = u.paired_estimate(compared, random, 1000, 0)
    assert estimate.value == pytest.approx(compared.mean())
    assert estimate.effect_vs_random is not None
    assert estimate.effect_vs_random.value == pytest.approx((compared - random).mean())
    assert estimate.p_vs_random == u.paired_permutation_p(compared - random, 0)
    assert u.Estimate.from_json(estimate.to_json()) == estimate


def test_mutual_knn_rows_average_to_mutual_knn():
    torch.manual_seed(0)
    a = torch.randn(40, 16)
    b = a + 0.7 * torch.randn(40, 16)
    for k in (1, 5, 10):
        assert u.mutual_knn_rows(a, b, k).mean() == pytest.approx(latent.mutual_knn(a, b, k))


def test_wilson_for_shares_and_bca_for_other_means_as_scipy_gives_them():
    shares = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=float)
    assert u.mean_estimate(shares, 1000, 0).ci == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Wilson 8/10
    scores = np.random.default_rng(3).beta(2, 5, size=30)
    from scipy import stats

    ref = stats.bootstrap((scores,), np.mean, n_resamples=1000, method="BCa", **u.seeded(4)).confidence_interval
    assert u.mean_estimate(scores, 1000, 4).ci == pytest.approx((ref.low, ref.high))
    assert u.mean_estimate(np.full(5, 0.3), 1000, 0).ci == (0.3, 0.3)


def test_t_test_interval_and_p_agree():
    for value, var, df in ((0.1, 0.0025, 12), (-0.1, 0.0025, float("inf")), (0.02, 0.0004, 5)):
        ci, p = u.t_test(value, var, df)
        assert (ci[0] > 0 or ci[1] < 0) == (p < 0.05)
        assert ci[0] + ci[1] == pytest.approx(2 * value)
    ci, p = u.t_test(0.1, 0.0025, float("inf"))  # z = 2
    assert p == pytest.approx(0.0455, abs=1e-4) and ci == pytest.approx((0.1 - 0.098, 0.1 + 0.098), abs=1e-4)


def naive_compare(y: np.ndarray, table: np.ndarray) -> tuple[float, float, float]:
    """The random-effect contrast written out with loops: (difference, variance, df)."""
    s, n = table.shape
    d = [y[i] - sum(table[t, i] for t in range(s)) / s for i in range(n)]
    mean_d = sum(d) / n
    unit = sum((x - mean_d) ** 2 for x in d) / (n - 1) / n
    rows = [sum(table[t]) / n for t in range(s)]
    cols = [sum(table[:, i]) / s for i in range(n)]
    grand = sum(rows) / s
    ms_res = sum((table[t, i] - rows[t] - cols[i] + grand) ** 2 for t in range(s) for i in range(n))
    ms_res /= (s - 1) * (n - 1)
    spread = sum((r - grand) ** 2 for r in rows) / (s - 1)
    draw = max(0.0, spread - ms_res / n) * (1 + 1 / s)
    df = (unit + draw) ** 2 / (unit**2 / (n - 1) + (spread * (1 + 1 / s)) ** 2 / (s - 1)) if draw > 0 else n - 1
    df = max(df, min(n - 1, s - 1))
    return mean_d, unit + draw, df


@pytest.mark.parametrize("draw_sd", [0.0, 0.5])
def test_compare_to_draws_against_a_naive_two_way_computation(draw_sd):
    rng = np.random.default_rng(6)
    n, s = 20, 6
    unit = rng.normal(size=n)
    table = unit + draw_sd * rng.normal(size=(s, 1)) + 0.3 * rng.normal(size=(s, n))
    y = unit + 0.4 + 0.3 * rng.normal(size=n)
    estimate, random = u.compare_to_draws(y, table, range(10, 16), 1000, 0)
    difference, variance, df = naive_compare(y, table)
    ci, p = u.t_test(difference, variance, df)
    effect = estimate.effect_vs_random
    assert effect is not None and effect.value == pytest.approx(difference)
    assert effect.ci == pytest.approx(ci) and estimate.p_vs_random == pytest.approx(p)
    assert random.per_seed == pytest.approx(tuple(table.mean(1))) and random.seeds == tuple(range(10, 16))
    assert random.value == pytest.approx(table.mean())
    assert u.Estimate.from_json(estimate.to_json()) == estimate
    off, _ = u.compare_to_draws(y, table, range(6), 0, 0)
    assert off.ci is None and off.p_vs_random is None and off.effect_vs_random is not None


def test_draws_that_differ_widen_the_interval():
    rng = np.random.default_rng(7)
    unit = rng.normal(size=30)
    noise = 0.3 * rng.normal(size=(5, 30))
    shifts = np.array([[-1.0], [0.0], [1.0], [0.5], [-0.5]])
    alike, _ = u.compare_to_draws(unit + 0.1, unit + noise, range(5), 1000, 0)
    apart, _ = u.compare_to_draws(unit + 0.1, unit + noise + shifts, range(5), 1000, 0)
    widths = []
    for estimate in (alike, apart):
        assert estimate.effect_vs_random is not None and estimate.effect_vs_random.ci is not None
        widths.append(estimate.effect_vs_random.ci[1] - estimate.effect_vs_random.ci[0])
    assert widths[1] > 3 * widths[0]


def test_bh_adjust_against_the_step_up_rule():
    p = [0.01, 0.04, 0.03, 0.005, None, 0.5]
    got = u.bh_adjust(p)
    present = [0.01, 0.04, 0.03, 0.005, 0.5]
    m = len(present)
    order = sorted(range(m), key=present.__getitem__)
    expected = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):  # step up from the largest p
        k = order[rank - 1]
        running = min(running, present[k] * m / rank)
        expected[k] = running
    assert got[4] is None
    assert [got[i] for i in (0, 1, 2, 3, 5)] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("effect", "p_adjusted", "sign", "want"),
    [
        (-0.1, 0.001, -1, u.HOLDS),
        (0.1, 0.001, +1, u.HOLDS),
        (0.1, 0.001, -1, u.DOES_NOT_HOLD),
        (-0.1, 0.001, +1, u.DOES_NOT_HOLD),
        (-0.1, 0.2, -1, u.INCONCLUSIVE),  # p too large after the adjustment
        (-0.1, None, -1, u.INCONCLUSIVE),  # no test (intervals off)
        (float("nan"), 0.001, +1, u.INCONCLUSIVE),
    ],
)
def test_verdicts(effect, p_adjusted, sign, want):
    assert u.verdict(effect, p_adjusted, sign) == want
    assert u.verdict(effect, p_adjusted, sign, beyond=True) == want  # beyond every draw: the t decides
    assert u.verdict(effect, p_adjusted, sign, beyond=False) == u.INCONCLUSIVE  # a draw went further


def test_beyond_draws_only_from_19_draws_and_on_the_effects_side():
    draws = [float(d) for d in range(1, 20)]  # 19 draws, 1 to 19
    assert u.beyond_draws(0.5, draws, -1.0) is True and u.beyond_draws(0.5, draws, +1.0) is False
    assert u.beyond_draws(19.5, draws, +1.0) is True and u.beyond_draws(1.0, draws, -1.0) is False  # a tie: not beyond
    assert u.beyond_draws(0.5, draws[:18], -1.0) is None  # 18 draws: 1/19 > 5 %, no rank test
    assert u.beyond_draws(0.5, None, -1.0) is None and u.beyond_draws(0.5, draws, 0.0) is None


def test_beyond_draws_errs_one_time_in_s_plus_1_whatever_the_draws_distribution():
    """Exchangeable values from a skewed distribution (where a t for the draws errs more): the compared
    one is below all S others in 1 / (S + 1) of the repetitions (a naive count over 20000)."""
    rng = np.random.default_rng(3)
    values = rng.lognormal(sigma=1.0, size=(20000, 20))  # skewness about 6
    below = [u.beyond_draws(row[0], row[1:], -1.0) for row in values]
    assert np.mean(below) == pytest.approx(1 / 20, abs=0.005)


def test_findings_are_adjusted_together():
    rows = [u.Finding("c", "claim", "ja", -0.1, (-0.2, -0.01), p, 25, "pairs", -1, "x") for p in (0.01, 0.02, 0.04)]
    adjusted = u.adjust(rows)
    assert [row.p_adjusted for row in adjusted] == pytest.approx([0.03, 0.03, 0.04])
    assert all(row.verdict == u.HOLDS for row in adjusted)
    nulls = [u.Finding("c", "t", "ko", 0.01, None, 0.9, 25, "pairs", -1, "x") for _ in range(7)]
    alone = u.adjust([*rows, *nulls])
    assert all(row.verdict == u.INCONCLUSIVE for row in alone)  # ten tests: 0.01 x 10 / 1 = 0.1
    assert alone[0].to_json()["p_adjusted"] == pytest.approx(0.1)
    stopped = u.adjust([replace(row, beyond=False) for row in rows])  # a random draw went further each time
    assert all(row.verdict == u.INCONCLUSIVE for row in stopped) and stopped[0].to_json()["beyond_draws"] is False
    assert all(row.stopped_by_draws for row in stopped)  # the t alone would have said 'holds'
    assert not any(replace(row, beyond=False).stopped_by_draws for row in alone)  # inconclusive anyway


def test_beyond_random_reads_the_compared_value_and_the_draws():
    draws = tuple(float(d) for d in range(1, 20))
    random = u.Estimate(10.0, per_seed=draws)
    assert u.beyond_random(u.Estimate(0.5, effect_vs_random=u.Estimate(-9.5)), random) is True
    assert u.beyond_random(u.Estimate(5.0, effect_vs_random=u.Estimate(-5.0)), random) is False
    assert (
        u.beyond_random(u.Estimate(0.5, effect_vs_random=u.Estimate(-9.5)), u.Estimate(10.0, per_seed=draws[:5]))
        is None
    )
