"""eta^2 / ANOVA from streaming sufficient statistics against direct computations; overlap helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from transfer_neurons.analyses.specificity import activation_stats
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.metrics import overlap as ov
from transfer_neurons.metrics import specificity as spec
from transfer_neurons.metrics import uncertainty as u


def direct_eta2(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Two-pass textbook formula per column: sum_g n_g (mean_g - mean)^2 / sum (x - mean)^2."""
    mean = x.mean(0)
    between = sum((groups == g).sum() * (x[groups == g].mean(0) - mean) ** 2 for g in np.unique(groups))
    return between / ((x - mean) ** 2).sum(0)


def random_data(n=90, features=5, n_groups=3, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    x = rng.normal(size=(n, features)) + 0.7 * groups[:, None] * rng.normal(size=features) + offset
    return x, groups


def stats_of(x, groups, n_groups, chunks=None):
    acc = spec.GroupStats(n_groups, (x.shape[1],))
    bounds = [0, *(chunks or []), len(x)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        acc.update(torch.from_numpy(x[lo:hi]), torch.from_numpy(groups[lo:hi]))
    return acc


def test_eta_squared_equals_direct_computation_and_anova():
    x, groups = random_data()
    acc = stats_of(x, groups, 3)
    np.testing.assert_allclose(acc.eta_squared().numpy(), direct_eta2(x, groups), rtol=1e-10, atol=1e-12)
    expected_p = [scipy_stats.f_oneway(*(x[groups == g, j] for g in range(3))).pvalue for j in range(x.shape[1])]
    np.testing.assert_allclose(acc.anova_p().numpy(), expected_p, rtol=1e-8)
    np.testing.assert_allclose(acc.mean.numpy(), [x[groups == g].mean(0) for g in range(3)], rtol=1e-10)


def test_streaming_in_chunks_equals_all_at_once():
    x, groups = random_data(n=101, seed=1)
    whole = stats_of(x, groups, 3)
    chunked = stats_of(x, groups, 3, chunks=[1, 7, 40, 41, 99])
    torch.testing.assert_close(chunked.eta_squared(), whole.eta_squared(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.anova_p(), whole.anova_p(), rtol=1e-9, atol=1e-14)


def test_large_offset_stays_accurate():
    x, groups = random_data(seed=2, offset=1e6)
    np.testing.assert_allclose(stats_of(x, groups, 3).eta_squared().numpy(), direct_eta2(x, groups), rtol=1e-7)


def test_perfect_separation_and_independence():
    groups = np.repeat([0, 1, 2], 400)
    separating = groups.astype(float)[:, None] * 2.0 + 5.0  # constant inside each group
    independent = np.random.default_rng(3).normal(size=(len(groups), 1))
    acc = stats_of(np.hstack([separating, independent]), groups, 3)
    eta, p = acc.eta_squared(), acc.anova_p()
    assert eta[0] == pytest.approx(1.0) and p[0] == 0.0
    assert eta[1] < 0.01 and p[1] > 0.001


def test_constant_feature_gives_zero_and_p_one():
    acc = stats_of(np.ones((10, 1)), np.array([0, 1] * 5), 2)
    assert acc.eta_squared()[0] == 0 and acc.anova_p()[0] == 1


def test_regroup_equals_direct_with_merged_labels():
    x, groups = random_data(n=120, n_groups=4, seed=4)
    mapping = [0, 1, 1, 0]
    merged = stats_of(x, groups, 4).regroup(mapping)
    np.testing.assert_allclose(merged.eta_squared().numpy(), direct_eta2(x, np.array(mapping)[groups]), rtol=1e-10)


def test_multidimensional_features_and_one_group_per_call():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 2, 3))
    groups = np.repeat([0, 1], 15)
    acc = spec.GroupStats(2, (2, 3))
    acc.update(torch.from_numpy(x[:15]), 0)
    acc.update(torch.from_numpy(x[15:]), 1)
    expected = direct_eta2(x.reshape(30, 6), groups).reshape(2, 3)
    np.testing.assert_allclose(acc.eta_squared().numpy(), expected, rtol=1e-10)


def test_anova_needs_two_groups():
    acc = stats_of(np.ones((4, 1)), np.zeros(4, dtype=int), 2)
    with pytest.raises(ValueError, match="at least 2 non-empty groups"):
        acc.anova_p()


def test_summarize_by_hand():
    eta2 = torch.tensor([[0.05, 0.2, 0.3], [0.5, 0.0, 0.12]])
    p = torch.tensor([[0.01, 0.01, 0.2], [0.001, 1.0, 0.04]], dtype=torch.float64)
    out = spec.summarize(eta2, p, [(0, 0), (0, 1), (0, 2), (1, 0)])
    # eta2 0.05, 0.2, 0.3 (p 0.2: not significant), 0.5 -> > 0.1 and p < 0.05: 0.2 and 0.5
    assert out["share_eta2_gt_0.1"] == 0.5 and out["share_eta2_gt_0.25"] == 0.25
    assert out["mean_eta2"] == pytest.approx(0.2625) and out["n"] == 4


def direct_summary(eta2: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Today's summary, one number at a time (median: torch's lower middle value)."""
    return {
        "mean_eta2": float(np.mean(eta2)),
        "median_eta2": float(torch.from_numpy(eta2).median()),
        "share_eta2_gt_0.1": float(np.mean([e > 0.1 and q < 0.05 for e, q in zip(eta2, p, strict=True)])),
        "share_eta2_gt_0.25": float(np.mean([e > 0.25 and q < 0.05 for e, q in zip(eta2, p, strict=True)])),
    }


def eta_values(rng: np.random.Generator, shape, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Plausible (eta^2, p) of neurons: eta^2 mostly small, p small where eta^2 is large."""
    eta2 = np.clip(rng.beta(1.2, 6, shape) + shift, 0, 1)
    return eta2, np.clip(rng.random(shape) * (1 - eta2) ** 6, 0, 1)


def test_statistics_equal_direct_summary_for_any_leading_shape():
    rng = np.random.default_rng(0)
    for n in (7, 8):  # odd and even: the median is the lower middle value, as before
        eta2, p = eta_values(rng, (3, n))
        out = spec.statistics(eta2, p)
        assert list(out) == ["mean_eta2", "median_eta2", "share_eta2_gt_0.1", "share_eta2_gt_0.25"]
        for row in range(3):
            direct = direct_summary(eta2[row], p[row])
            assert {k: float(v[row]) for k, v in out.items()} == pytest.approx(direct, rel=1e-12)
    values = spec.neuron_values(np.array([0.3, 0.3, 0.05]), np.array([0.01, 0.2, 0.0]))
    assert values["share_eta2_gt_0.1"].tolist() == [1.0, 0.0, 0.0]


def naive_replicates(x: np.ndarray, lang: np.ndarray, block: np.ndarray, mapping, neurons, blocks):
    """Each block left out in turn: eta^2 and ANOVA p of the listed columns from the remaining rows by
    the textbook formula and scipy's f_oneway, then their summaries: {statistic: [blocks]}."""
    out: dict[str, list[float]] = {}
    for b in range(blocks):
        keep = block != b
        labels = np.array(mapping)[lang[keep]]
        cols = x[keep][:, neurons]
        eta2 = direct_eta2(cols, labels)
        p = np.array([scipy_stats.f_oneway(*(c[labels == g] for g in np.unique(labels))).pvalue for c in cols.T])
        for key, value in direct_summary(eta2, p).items():
            out.setdefault(key, []).append(value)
    return {key: np.array(v) for key, v in out.items()}


def test_block_replicates_equal_the_summaries_with_each_block_left_out():
    rng = np.random.default_rng(3)
    n, langs, blocks, width = 60, 3, 4, 12
    lang = np.repeat(np.arange(langs), n // langs)
    block = np.tile(np.arange(blocks), n // blocks)
    x = rng.normal(size=(n, 2 * width)) + 0.8 * (lang[:, None] == 1) * rng.random(2 * width)
    stats = spec.GroupStats(langs * blocks, (2, width))
    stats.update(torch.from_numpy(x.reshape(n, 2, width)), torch.from_numpy(lang * blocks + block))
    listed = {"a": torch.tensor([[0, 1], [1, 3], [0, 7], [1, 11]])}
    mapping = [0, 1, 0]  # target language 1 vs the rest
    got = spec.block_replicates(stats, mapping, blocks, listed)["a"]
    flat = [layer * width + neuron for layer, neuron in listed["a"].tolist()]
    expected = naive_replicates(x, lang, block, mapping, flat, blocks)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-9, atol=1e-12)
    assert spec.blocks_for([25, 3, 40]) == 3 and spec.blocks_for([25, 40]) == 10 and spec.blocks_for([1]) == 2


def test_jackknife_variance_by_hand():
    replicates = np.array([1.0, 2.0, 4.0])  # mean 7/3; sum of squares 14/3; (3 - 1) / 3 of it
    assert spec.jackknife_variance(replicates) == pytest.approx(28 / 9)
    # the delete-one jackknife of a mean is the usual s^2 / n
    x = np.random.default_rng(0).normal(size=12)
    leave_one_out = np.array([np.delete(x, i).mean() for i in range(12)])
    assert spec.jackknife_variance(leave_one_out) == pytest.approx(x.var(ddof=1) / 12)


def test_compare_to_random_by_hand():
    rng = np.random.default_rng(4)
    n, draws, blocks = 40, 3, 5
    top, random = eta_values(rng, n, shift=0.1), eta_values(rng, (draws, n))
    replicates = (
        {key: rng.normal(0.3, 0.02, blocks) for key in direct_summary(*top)},
        {key: rng.normal(0.2, 0.02, (blocks, draws)) for key in direct_summary(*top)},
    )
    tops, randoms = spec.compare_to_random({"a": top}, {"a": random}, {"a": replicates}, (9, 10, 11))["a"]
    direct = direct_summary(*top)
    per_seed = [direct_summary(random[0][s], random[1][s]) for s in range(draws)]
    for key, value in direct.items():
        top_e, random_e = tops[key], randoms[key]
        own, others = replicates[0][key], replicates[1][key]
        assert top_e.value == pytest.approx(value, rel=1e-12)
        assert random_e.per_seed == pytest.approx([d[key] for d in per_seed], rel=1e-12)
        assert random_e.value == pytest.approx(np.mean(random_e.per_seed)) and random_e.seeds == (9, 10, 11)
        assert top_e.ci == pytest.approx(u.t_test(value, float(spec.jackknife_variance(own)), blocks - 1)[0])
        if key == "median_eta2":  # descriptive: no test
            assert top_e.effect_vs_random is None and top_e.p_vs_random is None
            continue
        contrast = u.random_effect(
            value - random_e.value,
            float(spec.jackknife_variance(own - others.mean(1))),
            blocks - 1,
            [d[key] for d in per_seed],
            float(spec.jackknife_variance(others).mean()),
        )
        assert top_e.effect_vs_random is not None
        assert top_e.effect_vs_random.value == pytest.approx(value - random_e.value, abs=1e-12)
        assert top_e.effect_vs_random.ci == pytest.approx(contrast.estimate().ci)
        assert top_e.p_vs_random == pytest.approx(contrast.estimate().p_vs_random)
    off = spec.compare_to_random({"a": top}, {"a": random}, None, (9, 10, 11))["a"]
    assert all(e.ci is None and e.p_vs_random is None for e in [*off[0].values(), *off[1].values()])


def test_families_and_labelings():
    assert spec.families_for(["en", "nl", "it", "ja", "ko"]) == [
        "Germanic",
        "Germanic",
        "Romance",
        "Japonic",
        "Koreanic",
    ]
    assert spec.families_for(["xx"], {"xx": "Other"}) == ["Other"]
    with pytest.raises(InputError, match="--families xx=NAME"):
        spec.families_for(["ja", "xx"])
    out = spec.labelings(["en", "nl", "ja"], ["Germanic", "Germanic", "Japonic"], ["ja"])
    assert out == {"target:ja": [0, 0, 1], "family": [0, 0, 1], "language": [0, 1, 2]}


def test_activation_stats_equal_direct_computation(tiny):
    lm = tiny("gemma3_text")
    sentences = {
        "en": ["I can't.", "Would you like to dance with me?", "It is cold.", "One can always find time."],
        "ja": ["寒い。", "私と踊っていただけませんか。", "時間はいくらでも作れる。"],
    }
    acc = activation_stats(lm, sentences, batch_size=2, progress=False)
    acts = [collect(lm, s, ("act",), batch_size=2, progress=False)["act"] for s in sentences.values()]  # [L, n, m]
    x = torch.cat(acts, dim=1).permute(1, 0, 2).reshape(7, -1).double().numpy()
    expected = direct_eta2(x, np.array([0] * 4 + [1] * 3)).reshape(lm.num_layers, lm.mlp_width)
    np.testing.assert_allclose(acc.eta_squared().numpy(), expected, rtol=1e-6, atol=1e-9)


def test_jaccard_and_layer_counts_by_hand():
    a, b = [(0, 1), (0, 2), (3, 4)], [(0, 2), (3, 4), (5, 5), (6, 6)]
    assert ov.jaccard(a, b) == pytest.approx(2 / 5)
    np.testing.assert_allclose(ov.jaccard_matrix([a, b, a]), [[1, 0.4, 1], [0.4, 1, 0.4], [1, 0.4, 1]])
    assert ov.layer_counts(b, 7) == [1, 0, 0, 1, 0, 1, 1]
    # two random 100-sets out of 1000: E|A & B| = 10, Jaccard 10 / 190
    assert ov.chance_jaccard(100, 100, 1000) == pytest.approx(10 / 190)


def test_chance_jaccard_over_layers_by_hand():
    # {0, 1} vs {1, 2} of 50 neurons: only layer 1 is shared; P(in A) = 10/100, P(in B) = 10/100 on its
    # 50 neurons: E|A & B| = 50 * 0.01 = 0.5; 0.5 / (20 - 0.5) = 1/39
    assert ov.chance_jaccard_over_layers(10, 10, [0, 1], [1, 2], 50) == pytest.approx(1 / 39)
    # {0, 1, 2} vs {2}: E|A & B| = 10 * 10 * 1 / (50 * 3 * 1) = 2/3; 2/3 / (20 - 2/3) = 1/29
    assert ov.chance_jaccard_over_layers(10, 10, range(3), [2], 50) == pytest.approx(1 / 29)
    # disjoint candidate layers: no common neuron is possible
    assert ov.chance_jaccard_over_layers(10, 10, [0, 1], [2, 3], 50) == 0.0
    # identical layers: E|A & B| = 100 * 100 / 1000 = 10 out of 190, as chance_jaccard
    assert ov.chance_jaccard_over_layers(100, 100, [4, 5], [5, 4], 500) == pytest.approx(10 / 190)
    assert ov.chance_jaccard_over_layers(30, 20, [0, 1], [0, 1], 50) == pytest.approx(ov.chance_jaccard(30, 20, 100))


def test_chance_jaccard_over_layers_by_simulation():
    # random sets of 20 and 30 neurons over layers {0, 1, 2} and {2, 3} of 40 neurons
    rng = np.random.default_rng(0)
    layers_a, layers_b, width = [0, 1, 2], [2, 3], 40
    pool_a = [(layer, k) for layer in layers_a for k in range(width)]
    pool_b = [(layer, k) for layer in layers_b for k in range(width)]
    inters = []
    for _ in range(4000):
        a = {pool_a[i] for i in rng.choice(len(pool_a), 20, replace=False)}
        b = {pool_b[i] for i in rng.choice(len(pool_b), 30, replace=False)}
        inters.append(len(a & b))
    mean = float(np.mean(inters))  # expected: 20 * 30 * 1 / (40 * 3 * 2) = 2.5
    assert mean == pytest.approx(2.5, abs=0.1)
    assert ov.chance_jaccard_over_layers(20, 30, layers_a, layers_b, width) == pytest.approx(
        mean / (50 - mean), rel=0.05
    )
