"""compare-methods on a tiny model against direct computations: every method and key in methods.json,
Jaccard from the sets themselves, mean TN scores from the score tensors, massive-dimension shares
from naive forward passes, and each method's ablation equal to `ablate.run` called on its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_detect import naive_states

from transfer_neurons.analyses import ablate
from transfer_neurons.analyses.compare_methods import MethodsConfig, MethodsResult, massive_shares, report_rows, run
from transfer_neurons.analyses.pool import Sentences
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import load_model

TATOEBA = Path(__file__).parents[1] / "data" / "tatoeba"
METHODS = ["tn", "tn-centred", "lape", "ap"]
CONFIG = MethodsConfig(top_k=8, bootstrap=50, baseline_seeds=2, k=3, batch_size=8, max_items=3)


def pairs(lang: str, split: str, n: int):
    return read_pairs(TATOEBA / f"en-{lang}.{split}.jsonl", lang, n)


@pytest.fixture(scope="module")
def lm(model_folder):
    """A tiny Llama wide enough (256 neurons a layer) for LAPE to list top-k neurons."""
    return load_model(str(model_folder("llama", intermediate_size=256)), device="cpu", progress=False)


@pytest.fixture(scope="module")
def data():
    reference = [Sentences(lang, pairs(lang, "train", 16).l2, lang) for lang in ("ko", "nl")]
    return pairs("ja", "train", 24), pairs("ja", "test", 20), pairs("ja", "nonparallel", 20), reference


@pytest.fixture(scope="module")
def compared(lm, data, tmp_path_factory):
    """The comparison, saved and loaded back."""
    result = run(lm, *data, CONFIG, source="en-ja.train.jsonl")
    out = tmp_path_factory.mktemp("methods")
    result.save(out)
    return result, out


def test_methods_json_has_every_method_and_key(compared):
    result, out = compared
    saved = json.loads((out / "methods.json").read_text())
    assert saved["model"] == result.model and saved["lang"] == "ja" and saved["top_k"] == 8
    assert list(saved["methods"]) == METHODS
    for entry in saved["methods"].values():
        assert set(entry) == {"ablation", "output_lang", "qa", "specificity", "massive_share", "tn_scores"}
        assert set(entry["ablation"]) == {"normal", "deactivated", "random"}
        assert set(entry["ablation"]["deactivated"]["mean_mknn"]) == {"value", "ci", "effect_vs_random", "p_vs_random"}
        assert set(entry["output_lang"]) == set(entry["qa"]) == {"normal", "deactivated", "random"}
        assert entry["qa"]["deactivated"]["n"] == 3
        assert {"share_eta2_gt_0.1", "mean_eta2"} <= set(entry["specificity"]["top"])
        assert set(entry["massive_share"]) == {"value", "ci"} and set(entry["tn_scores"]) == {"type1", "type2"}
    assert set(saved["jaccard"]) == {*METHODS, "type1", "type2"}
    assert saved["massive_dims"] == {str(layer): dims for layer, dims in result.massive_dims.items()}
    assert (out / "methods.png").stat().st_size > 0
    again = MethodsResult.load(out)
    assert again.methods == result.methods and again.jaccard == result.jaccard and again.config == result.config
    assert again.summary_lines() == result.summary_lines() and len(result.summary_lines()) == 4
    rows = report_rows(result)
    assert [r["method"] for r in rows] == METHODS and rows[0]["jaccard_type1"] == "1.000"


def test_each_set_is_a_detect_folder(compared):
    result, out = compared
    for name in [*METHODS, "type1", "type2"]:
        saved = read_neurons(out / name)
        assert saved.neurons() == result.detections[name].neuron_set.neurons()
        assert saved.method == ("tn" if name.startswith("type") else name)
    assert read_neurons(out / "type2").neuron_type == "type2"


def test_jaccard_equals_a_direct_set_computation(compared):
    result, out = compared
    sets = {
        name: {tuple(t[:2]) for t in json.loads((out / name / "neurons.json").read_text())["top"][:8]}
        for name in result.jaccard
    }
    for a in sets:
        assert result.jaccard[a][a] == 1.0
        for b in sets:
            assert result.jaccard[a][b] == pytest.approx(len(sets[a] & sets[b]) / len(sets[a] | sets[b]))
    assert result.jaccard["tn"]["type1"] == 1.0  # the tn method is the raw Type-1 set
    assert min(result.jaccard[a][b] for a in sets for b in sets) < 1.0, "degenerate test: identical sets"


def test_mean_tn_score_is_the_mean_over_the_scored_neurons(compared):
    result, _ = compared
    for name, measures in result.methods.items():
        for neuron_type in ("type1", "type2"):
            scores = result.detections[neuron_type].scores
            values = [float(scores[layer, neuron]) for layer, neuron, _ in result.detections[name].top[:8]]
            finite = [v for v in values if np.isfinite(v)]
            assert measures.tn_scored[neuron_type] == len(finite)
            if finite:
                assert measures.tn_scores[neuron_type].value == pytest.approx(np.mean(finite), rel=1e-9)
    assert result.methods["tn"].tn_scored == {"type1": 8, "type2": 0}  # Type-1 layers hold no Type-2 score


def _naive_dims(mean: torch.Tensor) -> list[int]:
    """The fewest dimensions of `mean` holding half its squared norm, found one by one (<= 5, else none)."""
    squares: list[float] = (mean**2).tolist()
    dims: list[int] = []
    while sum(squares[d] for d in dims) < 0.5 * sum(squares):
        dims.append(max((d for d in range(len(squares)) if d not in dims), key=lambda d: squares[d]))
    return dims if len(dims) <= 5 else []


def test_massive_share_equals_a_direct_computation(lm, data, compared):
    result, _ = compared
    test = data[1]
    states = [naive_states(lm, s) for s in test.en + test.l2]
    means = [torch.stack([x[l]["h"] for x in states]).mean(0) for l in range(lm.num_layers)]
    assert {l: _naive_dims(m) for l, m in enumerate(means)} == result.massive_dims
    assert any(result.massive_dims.values()), "degenerate test: no layer has massive dimensions"
    contrib = states[0]  # row i of a layer's contrib is a_i u_i: its share in any dims is u_i's
    checked = 0
    for name, measures in result.methods.items():
        direct = []
        for layer, neuron, _ in result.detections[name].top[:8]:
            u = contrib[layer]["contrib"][neuron].detach()
            direct.append(float((u[result.massive_dims[layer]] ** 2).sum() / (u**2).sum()))
        checked += sum(share > 0 for share in direct)
        assert measures.massive_share.value == pytest.approx(np.mean(direct), rel=1e-6, abs=1e-12)
    assert checked, "degenerate test: no neuron of any set in a layer with massive dimensions"


@pytest.mark.parametrize("model_type", ["gemma3_text", "gpt2"])
def test_massive_share_of_one_neuron_under_a_post_norm(tiny, model_type):
    """u_i = g * v_i under Gemma-3's post-MLP norm (the naive contrib row is a_i u_i up to a scalar)."""
    lm = tiny(model_type)
    contrib = naive_states(lm, "Hello there.")[1]["contrib"]
    dims = [3, 7]
    got = massive_shares(lm, {"one": [(1, 5)]}, {1: dims})["one"]
    u = contrib[5].detach()
    assert float(got[0]) == pytest.approx(float((u[dims] ** 2).sum() / (u**2).sum()), rel=1e-5)


def test_ablation_equals_ablate_run_with_the_same_seed(lm, data, compared):
    result, _ = compared
    _, test, nonparallel, _ = data
    config = ablate.AblateConfig(top_k=8, bootstrap=50, baseline_seeds=2, k=3, batch_size=8, seed=0)
    for name, measures in result.methods.items():
        direct = ablate.run(lm, result.detections[name].neuron_set, test, nonparallel, config)
        assert measures.ablation == direct.summary
    effects = {name: m.effect("mean_mknn").value for name, m in result.methods.items()}
    assert len(set(effects.values())) > 1, "degenerate test: every method has the same effect"


def configured(**changes) -> MethodsConfig:
    return MethodsConfig.model_validate(CONFIG.model_dump() | changes)


def test_downstream_parts_are_optional_and_top_k_is_checked(lm, data):
    changes = {"methods": ["ap"], "output_lang": False, "qa": False, "bootstrap": 0}
    result = run(lm, *data, configured(**changes))
    assert result.methods["ap"].output_lang is None and result.methods["ap"].qa is None
    assert set(result.jaccard) == {"ap", "type1", "type2"}
    with pytest.raises(InputError, match=r"method lape lists \d+ neurons for 'ja', fewer than --top-k 200"):
        run(lm, *data, configured(**changes | {"methods": ["lape"], "top_k": 200}))
    with pytest.raises(InputError, match="--top-k 300 exceeds the 256 candidate neurons of the TN type2 set"):
        run(lm, *data, configured(**changes | {"top_k": 300}))
    with pytest.raises(InputError, match="at least 3 languages"):
        run(lm, data[0], data[1], data[2], [], configured(**changes | {"methods": ["lape"]}))
