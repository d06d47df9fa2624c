"""specificity and overlap from Python: run, save -> load round trips, naming and input checks."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import torch

from transfer_neurons.analyses import overlap, specificity
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.choices import Baseline
from transfer_neurons.errors import InputError
from transfer_neurons.metrics import overlap as ov

SENTENCES = {
    "en": ["I can't.", "Would you like to dance with me?", "It is cold.", "One can always find time."],
    "ja": ["寒い。", "私と踊っていただけませんか。", "時間はいくらでも作れる。"],
}


def neuron_set(
    lang: str, neuron_type: str, layers: tuple[int, ...], model: str | None, n: int = 12, **extra
) -> NeuronSet:
    """n ranked neurons spread over `layers`, best first."""
    top = tuple((layers[k % len(layers)], 3 * k + 1, 1.0 - 0.01 * k) for k in range(n))
    return NeuronSet(top, lang, neuron_type, model, layers, **extra)


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


@pytest.fixture(scope="module")
def spec_result(tiny):
    lm = tiny("llama")
    sets = {
        "ja-type1": neuron_set("ja", "type1", (0, 1), lm.name),
        "en-type2": neuron_set("en", "type2", (2, 3), lm.name),
    }
    config = specificity.SpecificityConfig(top_n=8, baseline=Baseline.uniform, seed=5, batch_size=2)
    return specificity.run(lm, SENTENCES, sets, config)


def test_specificity_run(spec_result, tiny):
    lm = tiny("llama")
    assert spec_result.langs == ["en", "ja"] and spec_result.n_sentences == {"en": 4, "ja": 3}
    assert spec_result.families == {"en": "Germanic", "ja": "Japonic"} and spec_result.model == lm.name
    assert set(spec_result.eta2) == {"target_ja", "target_en", "family", "language"} == set(spec_result.p)
    assert spec_result.eta2["family"].shape == (lm.num_layers, lm.mlp_width)
    assert spec_result.p["family"].dtype == torch.float64
    assert spec_result.stats.count.tolist() == [4.0, 3.0]
    one = spec_result.sets["ja-type1"]
    assert (one.lang, one.neuron_type, one.top_n) == ("ja", "type1", 8)
    assert set(one.labellings) == {"target", "family", "language"}
    assert one.labellings["target"].top.n == 8 and one.labellings["target"].random.n == 8
    neurons = neuron_set("ja", "type1", (0, 1), lm.name).neurons(8)
    expected = float(torch.stack([spec_result.eta2["target_ja"][l, i] for l, i in neurons]).double().mean())
    assert one.labellings["target"].top.mean_eta2.value == pytest.approx(expected, rel=1e-6)
    assert spec_result.top_neurons["ja-type1"].tolist() == [list(pair) for pair in neurons]
    assert spec_result.random_neurons["ja-type1"].shape == (5, 8, 2)  # default: 5 seeds
    lines = spec_result.summary_lines()
    assert [line.split(":")[0] for line in lines] == [
        f"{name} ({labelling})" for name in ("ja-type1", "en-type2") for labelling in ("target", "family", "language")
    ]
    share, random = one.labellings["target"].top.share_eta2_gt_0_1, one.labellings["target"].random.share_eta2_gt_0_1
    assert share.ci is not None and random.ci is not None
    assert lines[0].startswith(
        f"ja-type1 (target): eta^2 > 0.1 for {share.value:.1%} [{share.ci[0]:.1%}, {share.ci[1]:.1%}] of 8 neurons "
        f"vs random {random.value:.1%} [{random.ci[0]:.1%}, {random.ci[1]:.1%}] (p "
    )


def test_specificity_save_load_round_trip(spec_result, tmp_path):
    spec_result.save(tmp_path, {"note": {"path": "x"}})
    loaded = specificity.SpecificityResult.load(tmp_path)
    for f in fields(spec_result):
        a, b = getattr(spec_result, f.name), getattr(loaded, f.name)
        if f.name in ("eta2", "p", "top_neurons", "random_neurons"):
            assert same_tensors(a, b), f.name
        elif f.name == "replicates":  # (set, labelling) -> per statistic, top [G] and draws [G, S]
            assert a.keys() == b.keys() and a
            assert all(np.array_equal(a[k][w][name], b[k][w][name]) for k in a for w in (0, 1) for name in a[k][w])
        elif f.name == "stats":
            assert same_tensors(*({k: getattr(x, k) for k in specificity.STATS} for x in (a, b)))
            assert (a.n_groups, a.shape) == (b.n_groups, b.shape)
        else:
            assert a == b, f.name
    assert loaded.summary_lines() == spec_result.summary_lines()
    assert loaded.summarise() == spec_result.sets  # every summary recomputes from the stored files
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["baseline"] == "uniform"
    torch.testing.assert_close(loaded.stats.eta_squared(), spec_result.stats.eta_squared())
    with pytest.raises(InputError, match="'specificity' result, not 'overlap'"):
        overlap.OverlapResult.load(tmp_path)


def test_specificity_checks(tiny):
    lm = tiny("llama")
    sets = {"ja-type1": neuron_set("ja", "type1", (0, 1), lm.name, source="a/neurons.json")}
    config = specificity.SpecificityConfig(top_n=8)
    with pytest.raises(InputError, match="at least two languages"):
        specificity.run(lm, {"ja": SENTENCES["ja"]}, sets, config)
    with pytest.raises(InputError, match="'a/neurons.json' is for 'ja', which no --data file covers"):
        specificity.run(lm, {"en": SENTENCES["en"], "ko": ["안녕"]}, sets, config)
    with pytest.raises(InputError, match="--top-n 13 exceeds the 12 neurons listed in a/neurons.json"):
        specificity.run(lm, SENTENCES, sets, config.model_copy(update={"top_n": 13}))
    with pytest.raises(InputError, match="no built-in language family for xx"):
        specificity.run(lm, {**SENTENCES, "xx": ["?"]}, sets, config)
    far = {"ja-type1": neuron_set("ja", "type1", (0, lm.num_layers), lm.name)}
    with pytest.raises(InputError, match="lies outside the model"):
        specificity.run(lm, SENTENCES, far, config)


def test_name_sets():
    a = neuron_set("ja", "type1", (0,), None, source="runs/a/neurons.json")
    b = neuron_set("ja", "type1", (0,), None, source="runs/b/neurons.json")
    c = neuron_set("ja", "type2", (1,), None, source="runs/c/neurons.json")
    assert list(specificity.name_sets([a, b, c])) == ["ja-type1", "runs/b", "ja-type2"]


def test_overlap_run_and_round_trip(tmp_path):
    a = neuron_set("ja", "type1", (0, 1), "m", n=10)
    b = NeuronSet(tuple((1, k, 0.5) for k in range(1, 9)), "ko", "type1", "m", (1, 2))
    result = overlap.run([a, b], 4, 100, overlap.OverlapConfig())
    assert result.top_n == 8 and result.labels == ["ja type1", "ko type1"] and result.model == "m"
    # top-8 of a: (0,1) (1,4) (0,7) (1,10) (0,13) (1,16) (0,19) (1,22); b: (1,1)..(1,8): (1,4) in common
    assert result.jaccard == [[1.0, 1 / 15], [1 / 15, 1.0]]
    assert result.layer_counts == {"ja type1": [4, 4, 0, 0], "ko type1": [0, 8, 0, 0]}
    # candidate layers {0, 1} and {1, 2}: E|A & B| = 8 * 8 * 1 / (100 * 2 * 2) = 0.16; {1, 2} alone: 200
    assert result.chance_jaccard[0][1] == pytest.approx(0.16 / (16 - 0.16))
    assert result.chance_jaccard[1][1] == ov.chance_jaccard(8, 8, 200)
    result.save(tmp_path)
    assert overlap.OverlapResult.load(tmp_path) == result
    assert result.summary_lines() == [f"ja type1 vs ko type1: Jaccard {1 / 15:.3f}"]


def test_overlap_without_shape_and_checks():
    a = neuron_set("ja", "type1", (0, 5), None, n=6)
    b = neuron_set("ja", "type1", (1,), None, n=6)
    result = overlap.run([a, b], None, None, overlap.OverlapConfig(top_n=4))
    assert result.chance_jaccard is None and len(result.layer_counts["ja type1 (0)"]) == 6
    assert result.labels == ["ja type1 (0)", "ja type1 (1)"]
    with pytest.raises(InputError, match="at least two neuron sets"):
        overlap.run([a], None, None, overlap.OverlapConfig())
    with pytest.raises(InputError, match=r"different models \(None, other\)"):
        overlap.run([a, neuron_set("ja", "type2", (1,), "other")], None, None, overlap.OverlapConfig())
    with pytest.raises(InputError, match="--top-n 7 exceeds the 6 neurons"):
        overlap.run([a, b], None, None, overlap.OverlapConfig(top_n=7))
    with pytest.raises(InputError, match="lies outside the model"):
        overlap.run([a, b], 4, 100, overlap.OverlapConfig())
