"""Bootstrap intervals, permutation tests and verdicts (DESIGN.md 3.8) against known truths."""

from __future__ import annotations

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


def test_unpaired_permutation_p_null_and_shift():
    rng = np.random.default_rng(4)
    ps = np.array([u.permutation_p(rng.normal(size=20), rng.normal(size=25), seed=k, n_perm=1000) for k in range(200)])
    counts, _ = np.histogram(ps, bins=5, range=(0, 1))
    assert np.all(np.abs(counts - 40) <= 18), counts
    assert u.permutation_p(rng.normal(size=30) + 2, rng.normal(size=30), seed=0) < 0.01


def test_paired_estimate_effect_is_the_mean_difference_on_the_same_units():
    rng = np.random.default_rng(5)
    compared, random = rng.normal(size=25), rng.normal(size=25)
    estimate = u.paired_estimate(compared, random, 1000, 0)
    assert estimate.value == pytest.approx(compared.mean())
    assert estimate.effect_vs_random is not None
    assert estimate.effect_vs_random.value == pytest.approx((compared - random).mean())
    assert estimate.p_vs_random == u.paired_permutation_p(compared - random, 0)
    assert u.Estimate.from_json(estimate.to_json()) == estimate


def test_random_estimate_reports_each_draws_mean_over_its_units():
    values = np.arange(10, dtype=float)
    assignment = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    estimate = u.random_estimate(values, assignment, (7, 8, 9), 0, 0)
    assert estimate.seeds == (7, 8, 9)
    assert estimate.per_seed == (values[[0, 3, 6, 9]].mean(), values[[1, 4, 7]].mean(), values[[2, 5, 8]].mean())
    assert estimate.to_json()["sd"] == pytest.approx(np.std(estimate.per_seed, ddof=1))


def test_mutual_knn_rows_average_to_mutual_knn():
    torch.manual_seed(0)
    a = torch.randn(40, 16)
    b = a + 0.7 * torch.randn(40, 16)
    for k in (1, 5, 10):
        assert u.mutual_knn_rows(a, b, k).mean() == pytest.approx(latent.mutual_knn(a, b, k))


def test_mutual_knn_resample_copies_are_not_each_others_neighbours():
    """A pair drawn twice must not count its own copy as a neighbour: a naive recomputation on the
    resampled rows would (the copy is at distance 0 in both spaces)."""
    torch.manual_seed(2)
    a, b = torch.randn(12, 6), torch.randn(12, 6)  # unrelated: alignment near chance
    index = np.array([[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]])
    got = latent.mknn_resamples(a[None], b[None], 1, index)[0, 0]
    naive = latent.mutual_knn(a[index[0]], b[index[0]], 1)
    assert naive == 1.0 and got < 1.0


@pytest.mark.parametrize(
    ("effect", "ci", "p", "sign", "want"),
    [
        (-0.1, (-0.15, -0.05), 0.001, -1, u.HOLDS),
        (0.1, (0.05, 0.15), 0.001, +1, u.HOLDS),
        (0.1, (0.05, 0.15), 0.001, -1, u.DOES_NOT_HOLD),
        (-0.1, (-0.15, -0.05), 0.001, +1, u.DOES_NOT_HOLD),
        (-0.1, (-0.2, 0.01), 0.04, -1, u.INCONCLUSIVE),  # interval touches 0
        (-0.1, (-0.15, -0.05), 0.2, -1, u.INCONCLUSIVE),  # p too large
        (-0.1, None, 0.001, -1, u.INCONCLUSIVE),  # no interval (bootstrap off)
        (float("nan"), (0.1, 0.2), 0.001, +1, u.INCONCLUSIVE),
    ],
)
def test_verdicts(effect, ci, p, sign, want):
    assert u.verdict(effect, ci, p, sign) == want
