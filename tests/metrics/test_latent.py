"""Latent-space analyses against direct computations on random features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transfer_neurons.metrics import latent


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
