"""LAPE and AP as tensor functions, the token reductions they stream, the centred scorer and NaN-free
ranking: each against a direct, obviously-right computation (AP: scikit-learn itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from transfer_neurons.hooks.tokens import positive_counts, token_medians
from transfer_neurons.metrics.methods import (
    activation_probabilities,
    average_precision,
    lape_entropy,
    lape_scores,
    lape_threshold,
)
from transfer_neurons.metrics.scoring import LayerScorer, rank_neurons


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_equals_sklearn(ties):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 300, generator=gen)
    if ties:  # few distinct values: many tied scores inside each column, across both labels
        scores = scores.mul(2).round()
    scores[:, 0] = 1.0  # every score tied: AP is the share of positives
    labels = torch.rand(40, generator=gen) < 0.3
    got = average_precision(scores, labels, chunk=7)  # several chunks, the last one partial
    expected = [average_precision_score(labels.numpy(), scores[:, j].numpy()) for j in range(scores.shape[1])]
    assert np.allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    assert got[0] == pytest.approx(float(labels.float().mean()))


def test_average_precision_of_a_perfect_and_a_reversed_ranking():
    labels = torch.tensor([True, True, False, False, False])
    scores = torch.tensor([[5.0, 1.0], [4.0, 2.0], [3.0, 3.0], [2.0, 4.0], [1.0, 5.0]])
    got = average_precision(scores, labels)
    assert got[0] == 1.0
    assert got[1] == pytest.approx((1 / 4 + 2 / 5) / 2)


def test_average_precision_needs_both_labels():
    with pytest.raises(ValueError, match="positive and negative"):
        average_precision(torch.ones(3, 2), torch.ones(3, dtype=torch.bool))


def _padded(lengths, width, seed=0):
    """Left-padded token values [B, T, m] (padding filled with large junk) and their mask."""
    gen = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    values = torch.randn(len(lengths), longest, width, generator=gen).round(decimals=1)  # ties too
    mask = torch.zeros(len(lengths), longest, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, longest - n :] = True
    return values.masked_fill(~mask[..., None], 99.0), mask


def test_token_reductions_equal_direct_ones():
    lengths = [1, 2, 5, 6]
    values, mask = _padded(lengths, 8)
    medians = token_medians(values, mask)
    counts = positive_counts(values, mask)
    direct_counts = torch.zeros(len(lengths), 8)
    for b, n in enumerate(lengths):
        real = values[b, -n:].numpy()
        assert np.allclose(medians[b].numpy(), np.median(real, axis=0), atol=1e-6)
        direct_counts[b] = torch.from_numpy((real > 0).sum(0)).float()
    assert torch.equal(counts, direct_counts)


def test_lape_finds_a_neuron_active_for_one_language_only():
    """Three languages' token activations: neuron 0 fires only for language 1, neuron 1 for all,
    the rest at random; neuron 0 has the lowest entropy and is language 1's top neuron only."""
    gen = torch.Generator().manual_seed(1)
    counts, totals = [], []
    for lang, tokens in enumerate([50, 70, 60]):
        values = torch.randn(1, tokens, 30, generator=gen) - 1.5  # mostly inactive
        values[..., 0] = 1.0 if lang == 1 else -1.0
        values[..., 1] = 1.0
        mask = torch.ones(1, tokens, dtype=torch.bool)
        counts.append(positive_counts(values, mask).sum(0).double())
        totals.append(tokens)
    p = activation_probabilities(torch.stack(counts), torch.tensor(totals))  # [m, G]
    assert p.shape == (30, 3) and p[0].tolist() == [0.0, 1.0, 0.0]
    entropy = lape_entropy(p)
    assert entropy[0] == 0.0 and int(entropy.argmin()) == 0
    assert entropy[1] == pytest.approx(math.log(3))
    for target in range(3):
        scores = lape_scores(p, target)
        ranked = rank_neurons(scores[None], [0], 30)
        if target == 1:
            assert ranked[0] == (0, 0, 0.0)  # -H = 0: the best possible score
        else:
            assert torch.isnan(scores[0]) and all(neuron != 0 for _, neuron, _ in ranked)


def test_lape_threshold_is_the_authors_kth_value():
    p = torch.arange(200, dtype=torch.float64).reshape(10, 5, 4) / 200
    assert lape_threshold(p) == sorted(p.reshape(-1).tolist())[round(200 * 0.95) - 1]
    scores = lape_scores(p, 3)
    chosen = p[..., 3] > lape_threshold(p)
    assert torch.equal(~torch.isnan(scores), chosen) and chosen.sum() == 3  # 191, 195 and 199 of 0..199


def test_centred_scorer_shifts_r_and_c_only():
    gen = torch.Generator().manual_seed(2)
    values, gain, c, mu = (torch.randn(*shape, generator=gen) for shape in [(16, 8), (8,), (8,), (8,)])
    r, a, scale = torch.randn(5, 8, generator=gen), torch.randn(5, 16, generator=gen), torch.rand(5, generator=gen)
    raw = LayerScorer(values, gain, c).deltas(r, a, scale)
    assert torch.equal(LayerScorer(values, gain, c, center=torch.zeros(8)).deltas(r, a, scale), raw)
    centred = LayerScorer(values, gain, c, center=mu).deltas(r, a, scale)
    u = scale[:, None, None] * values * gain  # [B, m, d] effective value vectors
    shifted, target = (r - mu)[:, None, :], (c - mu)[None, None, :]
    cos = torch.nn.functional.cosine_similarity
    naive = cos(shifted + a[..., None] * u, target, dim=-1) - cos(shifted, target, dim=-1)
    assert torch.allclose(centred.float(), naive, atol=1e-5)
    assert not torch.allclose(centred, raw, atol=1e-3)


def test_ranking_skips_nan_scores():
    scores = torch.tensor([[0.5, float("nan"), 0.2], [float("nan"), 0.9, 0.2]], dtype=torch.float64)
    assert rank_neurons(scores, [0, 1], 10) == [(1, 1, 0.9), (0, 0, 0.5), (0, 2, 0.2), (1, 2, 0.2)]
    assert rank_neurons(scores, [0, 1], 2) == [(1, 1, 0.9), (0, 0, 0.5)]
