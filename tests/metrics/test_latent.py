"""Latent-space analyses against direct computations on random features."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from transfer_neurons.metrics import latent, neighbours, uncertainty


def knn_sets(feats: torch.Tensor, k: int) -> list[set[int]]:
    """Direct: for each row, the k other rows with the highest cosine similarity."""
    out = []
    for i in range(feats.shape[0]):
        sims = [
            (float(torch.nn.functional.cosine_similarity(feats[i], feats[j], dim=0)), j)
            for j in range(feats.shape[0])
            if j != i
        ]
        out.append({j for _, j in sorted(sims, reverse=True)[:k]})
    return out


def test_mutual_knn_equals_set_computation():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(60, 16, generator=gen)
    b = a + 0.8 * torch.randn(60, 16, generator=gen)  # partly aligned
    k = 5
    expected = np.mean([len(x & y) / k for x, y in zip(knn_sets(a, k), knn_sets(b, k), strict=True)])
    got = latent.mutual_knn(a, b, k)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.1 < got < 0.9


def test_mutual_knn_identical_is_one_and_scale_invariant():
    a = torch.randn(50, 8)
    assert latent.mutual_knn(a, a, 10) == 1.0
    assert latent.mutual_knn(a, 3.0 * a, 10) == 1.0


def test_mutual_knn_independent_is_about_k_over_n():
    gen = torch.Generator().manual_seed(1)
    n, k = 400, 10
    scores = [
        latent.mutual_knn(torch.randn(n, 32, generator=gen), torch.randn(n, 32, generator=gen), k) for _ in range(3)
    ]
    assert np.mean(scores) == pytest.approx(k / (n - 1), rel=0.25)


def test_mutual_knn_clamp_changes_only_outliers():
    a = torch.randn(40, 8)
    b = a.clone()
    b[:, 0] += 100 * torch.randn(40)  # one massive dimension dominates b's neighbours
    assert latent.mutual_knn(a, b, 5, clamp=0.95) > latent.mutual_knn(a, b, 5)


def test_mutual_knn_rejects_bad_k():
    with pytest.raises(ValueError):
        latent.mutual_knn(torch.randn(5, 3), torch.randn(5, 3), k=5)


def test_paired_cosine_and_centring():
    a, b = torch.randn(20, 6), torch.randn(20, 6)
    ref = torch.cat([a, b]).mean(0)
    direct = np.mean([float(torch.nn.functional.cosine_similarity(a[i] - ref, b[i] - ref, dim=0)) for i in range(20)])
    assert latent.paired_cosine(a, b, ref) == pytest.approx(direct, abs=1e-6)
    assert latent.paired_cosine(a + 50, b + 50) > 0.99  # a shared offset makes raw cosines ~1
    assert latent.paired_cosine(a + 50, b + 50, ref + 50) == pytest.approx(direct, abs=1e-6)


def test_centroid_cosines():
    states = {"en": torch.randn(10, 4) + torch.tensor([5.0, 0, 0, 0]), "ja": torch.randn(10, 4)}
    raw = latent.centroid_cosines(states, centre=False)
    assert raw.shape == (2, 2) and raw[0, 0] == pytest.approx(1.0)
    centred = latent.centroid_cosines(states)
    assert centred[0, 1] == pytest.approx(-1.0)  # two centroids centred on their mean point apart


def test_pca_2d_splits_by_language():
    states = {"en": torch.randn(30, 10), "ja": torch.randn(25, 10) + 8}
    points = latent.pca_2d(states)
    assert points["en"].shape == (30, 2) and points["ja"].shape == (25, 2)
    assert abs(points["en"][:, 0].mean() - points["ja"][:, 0].mean()) > 5


# per-pair values and their intervals ---------------------------------------------------------------


def stacks(n: int, layers: int = 3, dim: int = 8, noise: float = 0.7, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """[L, n, dim] en / l2 (l2 = en + noise, so partly aligned) and non-parallel en / l2."""
    gen = torch.Generator().manual_seed(seed)
    en = torch.randn(layers, n, dim, generator=gen) + 2.0  # an offset, so that centring matters
    l2 = en + noise * torch.randn(layers, n, dim, generator=gen)
    return en, l2, torch.randn(layers, n, dim, generator=gen) + 2.0, torch.randn(layers, n, dim, generator=gen) + 2.0


def naive_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return float(x @ y / (x.norm() * y.norm()))


@pytest.mark.parametrize("clamp", [None, 0.9])
def test_pair_units_means_equal_the_curves(clamp):
    h = stacks(30)
    act = stacks(30, dim=12, seed=1)
    units = latent.pair_units(h, act, k=4, clamp=clamp)
    en, l2, en_np, l2_np = h
    assert set(units) == {*latent.CURVES, "gap"} and all(v.shape == (3, 30) for v in units.values())
    for layer in range(3):
        ref = torch.cat([en[layer], l2[layer]]).double().mean(0)
        assert units["mknn"][layer].mean() == pytest.approx(
            latent.mutual_knn(en[layer], l2[layer], 4, clamp), abs=1e-12
        )
        assert units["parallel_sim"][layer].mean() == pytest.approx(latent.paired_cosine(en[layer], l2[layer]))
        assert units["nonparallel_sim_centered"][layer].mean() == pytest.approx(
            latent.paired_cosine(en_np[layer], l2_np[layer], ref)
        )
        assert units["act_nonparallel_sim"][layer].mean() == pytest.approx(
            latent.paired_cosine(act[2][layer], act[3][layer])
        )
        for i in (0, 17):  # single pairs against the textbook formula
            assert units["parallel_sim_centered"][layer, i] == pytest.approx(
                naive_cosine(en[layer, i] - ref, l2[layer, i] - ref)
            )
            assert units["act_parallel_sim"][layer, i] == pytest.approx(
                naive_cosine(act[0][layer, i], act[1][layer, i])
            )
            gap = naive_cosine(en[layer, i] - ref, l2[layer, i] - ref) - naive_cosine(
                en_np[layer, i] - ref, l2_np[layer, i] - ref
            )
            assert units["gap"][layer, i] == pytest.approx(gap)
        hits = [len(x & y) / 4 for x, y in zip(knn_sets(en[layer], 4), knn_sets(l2[layer], 4), strict=True)]
        if clamp is None:
            np.testing.assert_allclose(units["mknn"][layer], hits)


def subsets_of(n: int, n_sub: int, seed: int, r: int) -> np.ndarray:
    """The subsets `mknn_subsamples` draws (same generator, same order)."""
    return np.argsort(np.random.default_rng(seed).random((n_sub, n)), axis=1)[:, :r]


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize(("n", "k"), [(25, 5), (40, 10), (30, 2)])
def test_mknn_subsamples_equal_mutual_knn_of_each_subset_with_k_minus_one(n, k, narrow, monkeypatch):
    """Each subset of r = n (k - 1) / k pairs, mutual kNN with k - 1 neighbours on those rows only
    (no copies), and the factor n k / (r (k - 1)) - 1 that scales their variance to the full sample's.
    `narrow`: candidate windows of k rows, so that most subsets take the fallback."""
    if narrow:
        monkeypatch.setattr(neighbours, "_window", lambda k, total: min(k, total))
    en, l2, _, _ = stacks(n, layers=2, dim=16, noise=1.0, seed=n)
    values, factor = neighbours.mknn_subsamples(en, l2, k, 30, seed=4)
    r = round(n * (k - 1) / k)
    assert values.shape == (30, 2) and factor == pytest.approx(n * k / (r * (k - 1)) - 1)
    for row, subset in zip(values, subsets_of(n, 30, 4, r), strict=True):
        for layer in range(2):
            direct = latent.mutual_knn(en[layer][subset], l2[layer][subset], k - 1)
            assert row[layer] == pytest.approx(direct, abs=1e-12)
    assert neighbours.mknn_subsamples(en, l2, 1, 30, 4) is None  # k = 1: no smaller neighbourhood
    again = neighbours.mknn_subsamples(en, l2, k, 30, seed=4)
    assert again is not None and np.array_equal(again[0], values)


def test_curve_intervals_centre_mutual_knn_on_its_value_and_use_bca_for_the_means():
    h = stacks(60, layers=2, noise=1.0)
    units = latent.pair_units(h, h, k=5)
    mknn = units["mknn"].mean(1)
    subsamples = neighbours.mknn_subsamples(h[0], h[1], 5, 200, 0)
    low, high = latent.curve_intervals(units, mknn, subsamples, 500, 0)
    assert set(low) == set(high) == {*latent.CURVES, "gap"}
    se = np.sqrt(neighbours.subsample_variance(*subsamples))
    np.testing.assert_allclose(np.array(high["mknn"]) - mknn, latent.Z95 * se)
    np.testing.assert_allclose(mknn - np.array(low["mknn"]), latent.Z95 * se)
    for layer in range(2):
        assert (low["gap"][layer], high["gap"][layer]) == uncertainty.bca_interval(units["gap"][layer], 500, 0)
    assert latent.curve_intervals(units, mknn, subsamples, 0, 0) == ({}, {})


def test_middle_layers():
    assert latent.middle_layers(18) == (list(range(6, 12)), [*range(6), *range(12, 18)])
    assert latent.middle_layers(4) == ([1, 2], [0, 3])
    assert latent.middle_layers(2) == ([0, 1], [])


def test_middle_peak_against_direct_computation():
    rng = np.random.default_rng(0)
    curve = np.array([0.2, 0.25, 0.5, 0.45, 0.3, 0.2])
    values = curve + 0.05 * rng.normal(size=(200, 6))
    peak = latent.middle_peak(curve, (values, 2.0), 40)
    assert peak is not None and (peak.middle, peak.outer, peak.n) == ([2, 3], [0, 1, 4, 5], 40)
    assert peak.value == pytest.approx(curve[[2, 3]].mean() - curve[[0, 1, 4, 5]].mean())
    se = np.sqrt(np.var(values[:, [2, 3]].mean(1) - values[:, [0, 1, 4, 5]].mean(1), ddof=1) / 2.0)
    assert peak.ci == pytest.approx((peak.value - 1.959963984540054 * se, peak.value + 1.959963984540054 * se))
    assert peak.p == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(peak.value / se / math.sqrt(2)))), rel=1e-9)
    assert latent.MiddlePeak.from_json(json.loads(json.dumps(peak.to_json()))) == peak
    assert latent.middle_peak(curve[:2], None, 40) is None
    off = latent.middle_peak(curve, None, 40)
    assert off is not None and off.ci is None and off.p is None


@pytest.mark.parametrize("narrow", [False, True])
def test_mknn_swaps_equal_mutual_knn_of_explicitly_swapped_sets(narrow, monkeypatch):
    """Each swap exchanges the two conditions' states of the same pairs on every layer (`narrow`:
    candidate windows of k, so that the fallback to every candidate runs)."""
    if narrow:
        monkeypatch.setattr(neighbours, "_window", lambda k, total: min(k, total))
    en, first, _, _ = stacks(30, layers=2, dim=12, noise=1.0, seed=1)
    second = first + 0.8 * torch.randn(first.shape, generator=torch.Generator().manual_seed(3), dtype=first.dtype)
    got = neighbours.mknn_swaps(en, first, second, 4, 20, seed=5)
    swapped = np.random.default_rng(5).random((20, 30)) < 0.5
    for value, w in zip(got, swapped, strict=True):
        mask = torch.from_numpy(w)[:, None]
        one = [torch.where(mask, second[layer], first[layer]) for layer in range(2)]
        two = [torch.where(mask, first[layer], second[layer]) for layer in range(2)]
        direct = np.mean([latent.mutual_knn(en[l], one[l], 4) - latent.mutual_knn(en[l], two[l], 4) for l in range(2)])
        assert value == pytest.approx(direct, abs=1e-12)
    none = neighbours.mknn_swaps(en, first, first, 4, 20, seed=5)
    assert np.all(none == 0)


def test_mknn_versus_random_values_and_their_structure():
    en, l2, _, _ = stacks(40, layers=2, dim=12, noise=1.0, seed=2)
    gen = torch.Generator().manual_seed(0)
    compared = l2 + 2.0 * torch.randn(l2.shape, generator=gen, dtype=l2.dtype)
    draws = [l2 + 0.3 * torch.randn(l2.shape, generator=gen, dtype=l2.dtype) for _ in range(4)]
    estimate, random = latent.mknn_versus_random(en, compared, draws, 5, 200, 0, seeds=(7, 8, 9, 10))
    per_draw = [latent.mean_mknn(en, d, 5) for d in draws]
    assert estimate.value == pytest.approx(latent.mean_mknn(en, compared, 5))
    assert random.per_seed == pytest.approx(per_draw) and random.seeds == (7, 8, 9, 10)
    assert random.value == pytest.approx(np.mean(per_draw))
    effect = estimate.effect_vs_random
    assert effect is not None and effect.value == pytest.approx(estimate.value - np.mean(per_draw))
    assert (
        effect.ci is not None and effect.ci[1] < 0 and estimate.p_vs_random is not None and estimate.p_vs_random < 0.05
    )
    off, off_random = latent.mknn_versus_random(en, compared, draws, 5, 0, 0)
    assert off.ci is None and off.p_vs_random is None and off_random.ci is None
