"""Latent-space analyses against direct computations on random features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transfer_neurons.metrics import latent, uncertainty


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


def mknn_bounds(n: int, n_boot: int = 400, seed: int = 0):
    h = stacks(n, layers=2, noise=1.0)
    units = latent.pair_units(h, h, k=5)
    index = uncertainty.resample_indices(n, n_boot, seed)
    boot = latent.mknn_resamples(h[0], h[1], 5, index)
    low, high = latent.curve_intervals(units, boot, index)
    return units, boot, low, high


def test_mknn_bootstrap_contains_the_value_and_narrows_with_more_pairs():
    units, boot, low, high = mknn_bounds(60)
    assert boot.shape == (400, 2) and set(low) == set(high) == {*latent.CURVES, "gap"}
    for name, values in units.items():
        point = values.mean(1)
        assert np.all(np.array(low[name]) <= point) and np.all(point <= np.array(high[name])), name
    _, _, big_low, big_high = mknn_bounds(400)
    for layer in range(2):
        assert big_high["mknn"][layer] - big_low["mknn"][layer] < 0.7 * (high["mknn"][layer] - low["mknn"][layer])
    # the mutual kNN bounds are recomputations on resampled pairs, not bootstrap means of row hits
    rows = uncertainty.percentile_interval(
        uncertainty.bootstrap_means(units["mknn"].T, uncertainty.resample_indices(60, 400, 0))
    )
    assert not np.allclose(rows[0], low["mknn"])


def test_mknn_bootstrap_is_seeded_and_off_at_zero():
    assert mknn_bounds(50, seed=3)[2:] == mknn_bounds(50, seed=3)[2:]
    assert mknn_bounds(50, seed=3)[2] != mknn_bounds(50, seed=4)[2]
    units, boot, low, high = mknn_bounds(50, n_boot=0)
    assert boot.shape == (0, 2) and low == high == {}
    assert latent.peak_interval(boot) is None
    middle = latent.middle_peak(np.zeros((4, 50)), boot, 0)
    assert middle is not None and middle.ci is None


def test_peak_interval_and_middle_layers():
    boot = np.zeros((100, 6))
    boot[np.arange(100), np.r_[np.full(50, 2), np.full(48, 3), [0, 5]]] = 1.0  # argmax 2 or 3, two outliers
    assert latent.peak_interval(boot) == (2, 3)
    assert latent.middle_layers(18) == (list(range(6, 12)), [*range(6), *range(12, 18)])
    assert latent.middle_layers(4) == ([1, 2], [0, 3])
    assert latent.middle_layers(2) == ([0, 1], [])


def test_middle_peak_against_direct_computation():
    rng = np.random.default_rng(0)
    hits = rng.uniform(0, 0.5, size=(6, 40))
    hits[2:4] += 0.2  # a middle-layer peak in every pair
    boot = rng.uniform(0, 1, size=(200, 6))
    peak = latent.middle_peak(hits, boot, seed=1)
    assert peak is not None and (peak.middle, peak.outer, peak.n) == ([2, 3], [0, 1, 4, 5], 40)
    per_pair = hits[[2, 3]].mean(0) - hits[[0, 1, 4, 5]].mean(0)
    assert peak.value == pytest.approx(per_pair.mean())
    assert peak.ci == uncertainty.interval(boot[:, [2, 3]].mean(1) - boot[:, [0, 1, 4, 5]].mean(1))
    assert peak.p == uncertainty.paired_permutation_p(per_pair, 1) and peak.p < 0.01
    assert latent.MiddlePeak.from_json(json.loads(json.dumps(peak.to_json()))) == peak
    assert latent.middle_peak(hits[:2], boot[:, :2], 0) is None
    assert latent.Peak.from_json(latent.Peak(3, (2, 4)).to_json()) == latent.Peak(3, (2, 4))


def resampled_mknn_directly(a: torch.Tensor, b: torch.Tensor, k: int, rows: list[int]) -> float:
    """Direct: the resample's rows are the pairs `rows` (with copies); each row's k nearest other rows
    by cosine, copies of its own pair excluded, ties taken in row order; mean |kNN_a & kNN_b| / k."""

    def knn(x: torch.Tensor) -> list[set[int]]:
        sims = torch.nn.functional.cosine_similarity(x[:, None].double(), x[None].double(), dim=-1)
        return [{j for _, j in sorted((-float(sims[u, v]), j) for j, v in enumerate(rows) if v != u)[:k]} for u in rows]

    return float(np.mean([len(x & y) / k for x, y in zip(knn(a), knn(b), strict=True)]))


@pytest.mark.parametrize(("n", "k", "width"), [(25, 3, None), (25, 3, 3), (30, 10, 10), (12, 10, None)])
def test_mknn_resamples_equal_the_direct_computation(n, k, width):
    """Copies of a neighbour straddling the k-th place count once per copy taken on both sides;
    width=k forces the recomputation with every pair for most resamples."""
    en, l2, _, _ = stacks(n, layers=1, dim=16, noise=1.0, seed=n)
    index = uncertainty.resample_indices(n, 120, 2)
    got = latent.mknn_resamples(en, l2, k, index, width=width)[:, 0]
    expected = [resampled_mknn_directly(en[0], l2[0], k, list(rows)) for rows in index]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    permuted = np.stack([np.random.default_rng(s).permutation(n) for s in range(3)])  # no copies
    np.testing.assert_allclose(latent.mknn_resamples(en, l2, k, permuted)[:, 0], latent.mutual_knn(en[0], l2[0], k))
