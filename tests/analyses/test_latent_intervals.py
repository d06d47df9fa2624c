"""latent and ablate with intervals on a tiny model: per-pair values, bounds, every draw of the
multi-seed random baseline on every pair, save -> load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import EXAMPLES
from transfer_neurons.analyses import ablate, latent
from transfer_neurons.analyses.base import conditions_for
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Positions
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.hooks.interventions import RandomBaseline
from transfer_neurons.metrics import latent as metrics

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
    assert peak == curves.peak()
    assert middle is not None and middle.n == 24 and (middle.middle, middle.outer) == ([1, 2], [0, 3])
    assert middle.value == pytest.approx(np.mean(curves.mknn[1:3]) - np.mean(curves.mknn[::3]))
    assert middle.ci is not None and middle.ci[0] < middle.value < middle.ci[1] and middle.p is not None
    line = result.summary_lines()[0]
    assert f"mutual kNN (k = 3, n = 24) peaks at layer {peak}" in line and "(24 pairs, p = " in line
    out = result.save(tmp_path / "latent")
    data = json.loads((out / "latent.json").read_text())
    pair = data["pairs"]["ja"]
    assert data["bootstrap"] == 200 and pair["n"] == 24 and set(pair["ci_low"]) == CURVES
    assert pair["peak"] == {"layer": peak} and pair["middle_peak"]["p"] == middle.p
    loaded = latent.LatentResult.load(out)
    assert loaded.pairs == result.pairs and loaded.peaks == result.peaks and loaded.middle_peak == result.middle_peak
    assert all(np.array_equal(loaded.units["ja"][k], units[k]) for k in CURVES)
    assert loaded.summary_lines() == result.summary_lines()
    again = latent.run(tiny("llama"), [pairs], {}, config)
    assert again.pairs == result.pairs and again.middle_peak == result.middle_peak  # seeded
    off = latent.run(tiny("llama"), [pairs], {}, config.model_copy(update={"bootstrap": 0}))
    assert off.pairs["ja"].ci_low == {} and off.middle_peak["ja"].ci is None and off.middle_peak["ja"].p is None
    assert off.pairs["ja"].mknn == curves.mknn and "[" not in off.summary_lines()[0]


def test_every_draw_runs_on_every_pair(tiny, neurons, pairs):
    """The random baseline's units are each draw's own capture of every pair; its curves the mean over
    the draws; its mean mutual kNN estimate that of `metrics.latent.mknn_versus_random` on those states."""
    lm = tiny("llama")
    config = ablate.AblateConfig(top_k=8, k=3, baseline_seeds=3, bootstrap=100, batch_size=5)
    random = conditions_for(lm, neurons, config, Positions.last)["random"]
    assert isinstance(random, RandomBaseline) and len(random.draws) == 3
    result = ablate.run(lm, neurons, pairs, None, config)
    normal = latent.capture_pair(lm, pairs, None, batch_size=5)
    english = (normal.en, normal.en_np)
    draws = [latent.capture_pair(lm, pairs, None, d, english, batch_size=5) for d in random.draws]
    for s, states in enumerate(draws):
        measured = states.measure(config.k, config.clamp, 0, config.seed)
        for name in ("mknn", "parallel_sim", "nonparallel_sim_centered", "act_parallel_sim"):
            np.testing.assert_allclose(result.units["random"][name][s], measured.units[name], atol=1e-5)
    assert not np.allclose(result.units["random"]["parallel_sim"][0], result.units["random"]["parallel_sim"][1])
    mean = np.mean([d.units["mknn"] for d in map(lambda x: x.measure(3, None, 0, 0), draws)], axis=0).mean(1)
    np.testing.assert_allclose(result.conditions["random"].mknn, mean, atol=1e-6)
    deactivated = latent.capture_pair(lm, pairs, None, result.deactivated, english, batch_size=5)
    expected, baseline = metrics.mknn_versus_random(
        normal.en["h"], deactivated.l2["h"], [d.l2["h"] for d in draws], 3, 100, config.seed, seeds=random.seeds
    )
    got = result.summary["deactivated"]["mean_mknn"]
    assert got.value == pytest.approx(expected.value) and got.ci == pytest.approx(expected.ci)
    assert got.effect_vs_random == pytest.approx(expected.effect_vs_random)
    assert got.p_vs_random == pytest.approx(expected.p_vs_random)
    assert result.summary["random"]["mean_mknn"].per_seed == pytest.approx(baseline.per_seed)


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
    assert loaded.units["random"]["gap"].shape == (3, 4, 24)
    np.testing.assert_array_equal(loaded.units["random"]["gap"], result.units["random"]["gap"])
    np.testing.assert_array_equal(loaded.units["deactivated"]["gap"], result.units["deactivated"]["gap"])
