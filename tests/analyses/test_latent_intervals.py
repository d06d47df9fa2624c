"""latent and ablate with intervals on a tiny model: per-pair values, bounds, the multi-seed random
baseline run in one pass, save -> load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import EXAMPLES
from transfer_neurons.analyses import ablate, latent
from transfer_neurons.analyses.base import conditions_for
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, RandomBaseline, for_units
from transfer_neurons.metrics import latent as metrics
from transfer_neurons.metrics import uncertainty

CURVES = {*metrics.CURVES, "gap"}


@pytest.fixture(scope="module")
def pairs():
    return read_pairs(EXAMPLES, "ja", 24)


@pytest.fixture(scope="module")
def neurons(tiny) -> NeuronSet:
    """12 'ja' neurons of the tiny Llama over its middle layers, best first."""
    top = tuple(((1, 2)[k % 2], 5 * k + 1, 1.0 - 0.01 * k) for k in range(12))
    return NeuronSet(top, "ja", "type1", tiny("llama").name, (1, 2))


def test_latent_intervals_and_round_trip(tiny, pairs, tmp_path):
    config = latent.LatentConfig(k=3, bootstrap=200, seed=2)
    result = latent.run(tiny("llama"), [pairs], {}, config)
    curves, units = result.pairs["ja"], result.units["ja"]
    assert set(curves.ci_low) == set(curves.ci_high) == CURVES and set(units) == CURVES
    for name in CURVES:
        value = np.array(getattr(curves, name))
        np.testing.assert_allclose(units[name].mean(1), value)
        assert np.all(np.array(curves.ci_low[name]) <= value + 1e-12) and np.all(
            value <= np.array(curves.ci_high[name]) + 1e-12
        )
    peak, middle = result.peaks["ja"], result.middle_peak["ja"]
    assert peak.layer == curves.peak() and peak.ci is not None and peak.ci[0] <= peak.ci[1]
    assert middle is not None and middle.n == 24 and (middle.middle, middle.outer) == ([1, 2], [0, 3])
    assert middle.value == pytest.approx(np.mean(curves.mknn[1:3]) - np.mean(curves.mknn[::3]))
    line = result.summary_lines()[0]
    assert f"peaks at layer {peak.layer} [{peak.ci[0]}, {peak.ci[1]}]" in line and "24 pairs)" in line
    out = result.save(tmp_path / "latent")
    data = json.loads((out / "latent.json").read_text())
    pair = data["pairs"]["ja"]
    assert data["bootstrap"] == 200 and pair["n"] == 24 and set(pair["ci_low"]) == CURVES
    assert pair["peak"] == {"layer": peak.layer, "ci": list(peak.ci)} and pair["middle_peak"]["p"] == middle.p
    loaded = latent.LatentResult.load(out)
    assert loaded.pairs == result.pairs and loaded.peaks == result.peaks and loaded.middle_peak == result.middle_peak
    assert all(np.array_equal(loaded.units["ja"][k], units[k]) for k in CURVES)
    assert loaded.summary_lines() == result.summary_lines()
    again = latent.run(tiny("llama"), [pairs], {}, config)
    assert again.pairs == result.pairs and again.middle_peak == result.middle_peak  # seeded
    off = latent.run(tiny("llama"), [pairs], {}, config.model_copy(update={"bootstrap": 0}))
    assert off.pairs["ja"].ci_low == {} and off.peaks["ja"].ci is None and off.middle_peak["ja"].ci is None
    assert off.pairs["ja"].mknn == curves.mknn and "[" not in off.summary_lines()[0]


def test_random_draws_run_in_one_pass(tiny, neurons, pairs):
    """Each pair's L2 states under the multi-seed baseline equal those with its own draw applied alone."""
    lm = tiny("llama")
    config = ablate.AblateConfig(top_k=8, k=3, baseline_seeds=3, bootstrap=100, batch_size=5)
    random = conditions_for(lm, neurons, config, Positions.last)["random"]
    assert isinstance(random, RandomBaseline) and len(random.draws) == 3
    n = len(pairs)
    states = latent.capture_pair(lm, pairs, None, for_units(random, n), batch_size=5)
    draw = random.assignment(n)
    assert sorted(np.bincount(draw)) == [8, 8, 8]
    for i in range(n):
        alone = collect(lm, [pairs.l2[i]], latent.PARTS, intervention=random.draws[draw[i]])
        for part in latent.PARTS:
            torch.testing.assert_close(states.l2[part][:, i], alone[part][:, 0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(states.l2_np["h"][:, i - 1], alone["h"][:, 0], atol=1e-4, rtol=1e-4)  # shifted
    first_only = latent.capture_pair(lm, pairs, None, random.draws[0], batch_size=5)
    assert not torch.allclose(first_only.l2["h"][:, draw != 0], states.l2["h"][:, draw != 0])  # the draws differ

    result = ablate.run(lm, neurons, pairs, None, config)
    np.testing.assert_array_equal(result.units["random"]["draw"], draw)
    expected = states.measure(config.k, config.clamp, uncertainty.resample_indices(n, 100, config.seed))
    for name in ("parallel_sim", "nonparallel_sim_centered", "act_parallel_sim"):
        np.testing.assert_allclose(result.units["random"][name], expected.units[name], atol=1e-5)


def test_mknn_estimates_take_intervals_from_recomputations():
    rng = np.random.default_rng(0)
    rows = {name: rng.uniform(0, 1, 30) for name in ("normal", "deactivated", "random")}
    resamples = {name: rng.uniform(0, 1, 500) for name in rows}
    random = RandomBaseline((Intervention.of([(0, 1)]), Intervention.of([(0, 2)])), (7, 8))
    conditions = {"normal": None, "deactivated": Intervention.of([(0, 3)]), "random": random}
    out = ablate.mknn_estimates(rows, resamples, conditions, seed=5)
    draw = random.assignment(30)
    assert out["random"].seeds == (7, 8)
    assert out["random"].per_seed == pytest.approx([rows["random"][draw == s].mean() for s in (0, 1)])
    for name in rows:
        assert out[name].value == pytest.approx(rows[name].mean())
        assert out[name].ci == uncertainty.interval(resamples[name])
    effect = out["deactivated"].effect_vs_random
    assert effect is not None and effect.value == pytest.approx(rows["deactivated"].mean() - rows["random"].mean())
    assert effect.ci == uncertainty.interval(resamples["deactivated"] - resamples["random"])
    assert out["deactivated"].p_vs_random == uncertainty.paired_permutation_p(rows["deactivated"] - rows["random"], 5)
    off = ablate.mknn_estimates(rows, {name: np.zeros(0) for name in rows}, conditions, seed=5)
    assert off["deactivated"].ci is None and off["deactivated"].effect_vs_random.ci is None


def test_ablate_summary_and_round_trip(tiny, neurons, pairs, tmp_path):
    config = ablate.AblateConfig(top_k=8, k=3, baseline_seeds=3, bootstrap=200, seed=1)
    result = ablate.run(tiny("llama"), neurons, pairs, None, config)
    assert set(result.summary) == {"normal", "deactivated", "random"} and result.n_pairs == 24
    for name, metrics_of in result.summary.items():
        curves = result.conditions[name]
        assert set(metrics_of) == {"mean_mknn", "mean_gap", "middle_gap"}
        assert metrics_of["mean_mknn"].value == pytest.approx(np.mean(curves.mknn))
        assert metrics_of["mean_gap"].value == pytest.approx(np.mean(curves.gap))
        assert metrics_of["middle_gap"].value == pytest.approx(curves.gap[2])
        assert all(e.ci is not None and e.ci[0] <= e.value <= e.ci[1] for e in metrics_of.values())
        assert set(curves.ci_low) == CURVES
    deactivated = result.summary["deactivated"]["mean_mknn"]
    assert deactivated.effect_vs_random is not None and deactivated.p_vs_random is not None
    assert result.summary["random"]["mean_gap"].seeds == (1, 2, 3)
    lines = result.summary_lines()
    assert "vs random" in lines[1] and "(3 seeds" in lines[2] and "[" in lines[0]
    out = result.save(tmp_path / "ablate")
    data = json.loads((out / "ablation.json").read_text())
    assert data["bootstrap"] == 200 and data["baseline"]["seeds"] == [1, 2, 3] and data["n_pairs"] == 24
    assert set(data["summary"]["deactivated"]["mean_mknn"]) == {"value", "ci", "effect_vs_random", "p_vs_random"}
    assert data["summary"]["random"]["middle_gap"]["seeds"] == [1, 2, 3]
    assert set(data["conditions"]["normal"]["ci_high"]) == CURVES
    loaded = ablate.AblationResult.load(out)
    assert loaded.summary == result.summary and loaded.conditions == result.conditions
    assert loaded.random == result.random and loaded.summary_lines() == lines
    np.testing.assert_array_equal(loaded.units["random"]["draw"], result.units["random"]["draw"])
    np.testing.assert_array_equal(loaded.units["deactivated"]["gap"], result.units["deactivated"]["gap"])
