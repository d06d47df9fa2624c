"""Uncertainty of the specificity analysis (docs/method.md section 8) on a tiny model: the multi-seed random
baseline, per-neuron eta^2 against a naive computation, seeded intervals, the figure's error bars."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from transfer_neurons.analyses import specificity, specificity_summary
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Baseline
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, random_baseline
from transfer_neurons.metrics import specificity as spec

SENTENCES = {
    "en": ["I can't.", "Would you like to dance with me?", "It is cold.", "One can always find time.", "Go home."],
    "ja": ["寒い。", "私と踊っていただけませんか。", "時間はいくらでも作れる。", "家に帰りなさい。"],
    "ko": ["추워요.", "저랑 춤추실래요?", "시간은 언제든지 만들 수 있어요.", "집에 가."],
}
TOP_N = 10


def neuron_set(lang: str, neuron_type: str, layers: tuple[int, ...], n: int = 16) -> NeuronSet:
    """n ranked neurons spread over `layers`, best first (ranks not in (layer, neuron) order)."""
    top = tuple((layers[k % len(layers)], (7 * k + 3) % 60, 1.0 - 0.01 * k) for k in range(n))
    return NeuronSet(top, lang, neuron_type, None, layers)


SETS = {"ja-type1": neuron_set("ja", "type1", (0, 1)), "en-type2": neuron_set("en", "type2", (2, 3))}


def run(tiny, **settings: Any) -> specificity.SpecificityResult:
    config = specificity.SpecificityConfig(top_n=TOP_N, batch_size=2, **{"seed": 3, "bootstrap": 300, **settings})
    return specificity.run(tiny("llama"), SENTENCES, SETS, config)


@pytest.fixture(scope="module")
def result(tiny):
    return run(tiny, baseline_seeds=3)


@pytest.mark.parametrize("baseline", [Baseline.per_layer, Baseline.uniform])
def test_each_draw_is_the_seeded_baseline_and_is_summarised_on_its_own(tiny, baseline):
    lm = tiny("llama")
    multi, single = run(tiny, baseline_seeds=3, baseline=baseline), run(tiny, baseline_seeds=1, baseline=baseline)
    for name, s in SETS.items():
        top = Intervention.of(s.neurons(TOP_N))
        draws = multi.random_neurons[name]
        assert draws.shape == (3, TOP_N, 2)
        for k in range(3):
            expected = random_baseline(top, lm.mlp_width, baseline, list(s.layers), 3 + k).pairs()
            assert [tuple(pair) for pair in draws[k].tolist()] == expected
        assert single.random_neurons[name].tolist() == draws[:1].tolist()  # draw 0 is the single-seed baseline
        for labelling in ("target", "family", "language"):
            key = f"target_{s.lang}" if labelling == "target" else labelling
            per_draw = [spec.summarize(multi.eta2[key], multi.p[key], d.tolist()) for d in draws]
            random = multi.sets[name].labellings[labelling].random
            alone = single.sets[name].labellings[labelling]
            for metric, field in specificity_summary.METRICS.items():
                estimate = getattr(random, field)
                assert estimate.seeds == (3, 4, 5)
                assert estimate.per_seed == pytest.approx([d[metric] for d in per_draw], rel=1e-12)
                assert estimate.value == pytest.approx(np.mean(estimate.per_seed), rel=1e-12)
                assert getattr(alone.random, field).value == pytest.approx(per_draw[0][metric], rel=1e-12)
                assert (
                    getattr(alone.top, field).value == getattr(multi.sets[name].labellings[labelling].top, field).value
                )


def naive_eta2(lm, neurons: list[tuple[int, int]], groups: list[int]) -> list[float]:
    """eta^2 of each neuron on its own, from its captured last-token activations (groups: one per language)."""
    acts = [collect(lm, texts, ("act",), batch_size=2, progress=False)["act"] for texts in SENTENCES.values()]
    out = []
    for layer, neuron in neurons:
        values = [[float(a[layer, row, neuron]) for row in range(a.shape[1])] for a in acts]
        labels = [g for g, v in zip(groups, values, strict=True) for _ in v]
        x = np.array([v for vs in values for v in vs])
        grand = x.mean()
        between = sum(
            (np.array(labels) == g).sum() * (x[np.array(labels) == g].mean() - grand) ** 2 for g in set(labels)
        )
        out.append(between / ((x - grand) ** 2).sum())
    return out


def test_top_eta2_equals_naive_eta2_in_rank_order_also_after_loading(tiny, result, tmp_path):
    lm = tiny("llama")
    result.save(tmp_path)
    loaded = specificity.SpecificityResult.load(tmp_path)
    labels = {"target": [0, 1, 0], "family": [0, 1, 2], "language": [0, 1, 2]}  # en, ja, ko
    for labelling, groups in labels.items():
        expected = naive_eta2(lm, SETS["ja-type1"].neurons(TOP_N), groups)
        for r in (result, loaded):
            eta2 = r.top_eta2("ja-type1", labelling)
            assert eta2.dtype == np.float64 and eta2.shape == (TOP_N,)
            np.testing.assert_allclose(eta2, expected, rtol=1e-5, atol=1e-7)
    en = naive_eta2(lm, SETS["en-type2"].neurons(TOP_N), [1, 0, 0])
    np.testing.assert_allclose(loaded.top_eta2("en-type2"), en, rtol=1e-5, atol=1e-7)
    summary = loaded.sets["ja-type1"].labellings["target"].top
    assert summary.mean_eta2.value == pytest.approx(np.mean(loaded.top_eta2("ja-type1")), rel=1e-12)
    with pytest.raises(InputError, match="no neuron set 'ko-type1'.*ja-type1, en-type2"):
        loaded.top_eta2("ko-type1")
    with pytest.raises(InputError, match="no labelling 'genus'"):
        loaded.top_eta2("ja-type1", "genus")


def cis(data: Any) -> list[Any]:
    """Every "ci" in a JSON tree."""
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == "ci"] + [c for v in data.values() for c in cis(v)]
    return [c for v in data for c in cis(v)] if isinstance(data, list) else []


def test_same_seed_same_intervals_and_no_bootstrap_no_intervals(tiny, result, tmp_path):
    assert run(tiny, baseline_seeds=3).to_json() == result.to_json()
    other = run(tiny, baseline_seeds=3, seed=4).sets["ja-type1"].labellings["target"].top.mean_eta2
    assert other.ci != result.sets["ja-type1"].labellings["target"].top.mean_eta2.ci
    data = result.to_json()
    assert data["bootstrap"] == 300 and data["baseline"] == {"mode": "per-layer", "seed": 3, "seeds": [3, 4, 5]}
    top = data["sets"]["ja-type1"]["target"]["top"]
    assert top["n"] == TOP_N and set(top["share_eta2_gt_0.1"]) == {"value", "ci", "effect_vs_random", "p_vs_random"}
    assert set(top["median_eta2"]) == {"value", "ci"}
    assert all(ci is not None for ci in cis(data)) and len(cis(data)) == 2 * 3 * (4 + 4 + 3)
    off = run(tiny, baseline_seeds=3, bootstrap=0)
    off.save(tmp_path)
    written = json.loads((tmp_path / "specificity.json").read_text())
    assert cis(written) and all(ci is None for ci in cis(written))
    off_top = written["sets"]["ja-type1"]["target"]["top"]["mean_eta2"]
    assert off_top["value"] == top["mean_eta2"]["value"] and "p_vs_random" not in off_top  # no test without intervals
    assert written["jackknife_blocks"] is None and data["jackknife_blocks"] == result.blocks >= 2


def test_figure_has_error_bars_on_the_shares_and_n_in_the_title(result, tmp_path, monkeypatch):
    drawn: dict[str, Any] = {}
    monkeypatch.setattr(specificity.plots, "grouped_bars", lambda *args, **kwargs: drawn.update(args=args, **kwargs))
    result.plot(tmp_path / "x.png")
    group = "ja-type1\ntarget"
    share = result.sets["ja-type1"].labellings["target"].random.share_eta2_gt_0_25
    assert drawn["args"][0][group]["random eta2>0.25"] == share.value
    assert drawn["errors"][group]["random eta2>0.25"] == share.ci
    assert set(drawn["errors"]) == {f"{name}\n{labelling}" for name in SETS for labelling in ("target", "family")}
    assert drawn["n_label"] == f"n = {TOP_N} neurons per set; random: 3 draws of {TOP_N}"
