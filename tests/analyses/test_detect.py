"""Closed-form detection against a naive computation: one sentence and one neuron at a time."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from transfer_neurons import ParallelData, detect
from transfer_neurons.analyses.detect import DetectConfig, Detection, default_layers, parse_layers, run
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.testing import example_pairs


def _out(o):
    return o[0] if isinstance(o, tuple) else o


def naive_states(lm, sentence: str) -> dict:
    """Per layer, at the last token of one unpadded sentence: h, a, the MLP's residual contribution
    mlp, and each neuron's contribution a_i u_i [m, d], computed here from plain modules and weights.

    The adapter only says where the modules are; weights are read by module type (nn.Linear
    stores [d, m], transformers' Conv1D [m, d]), and a post-MLP RMS norm is linearised with its
    gain read off its own output: norm(1) = g / sqrt(1 + eps).
    """
    adapter, model = lm.adapter, lm.model
    layers = adapter.decoder_layers(model)
    downs = [adapter.down_module(model, l) for l in range(len(layers))]
    seen: dict = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o, l=l: seen.__setitem__(("h", l), _out(o)[0, -1]))
        for l, layer in enumerate(layers)
    ]
    handles += [
        down.register_forward_pre_hook(lambda m, i, l=l: seen.__setitem__(("a", l), i[0][0, -1]))
        for l, down in enumerate(downs)
    ]
    with torch.no_grad():
        lm.model(input_ids=lm.tokenizer(sentence, return_tensors="pt").input_ids)
    for h in handles:
        h.remove()
    out = {}
    for l, down in enumerate(downs):
        a = seen[("a", l)].double()
        w = down.weight.double()
        rows = w if isinstance(down, Conv1D) else w.t()  # [m, d]: row i is v_i
        assert rows.shape[0] == a.shape[0]
        contrib = a[:, None] * rows  # row i: a_i v_i
        with torch.no_grad():
            mlp = down(seen[("a", l)]).double()  # bias included: not a neuron's contribution
            norm = adapter.post_norm_module(model, l)
            if norm is not None:  # frozen-norm linearisation g * a_i v_i / rms(mlp)
                eps = getattr(norm, "eps", getattr(norm, "variance_epsilon", None))
                gain = norm(torch.ones_like(mlp).float()).double() * (1 + eps) ** 0.5
                contrib = contrib * gain / (mlp.pow(2).mean() + eps).sqrt()
                mlp = norm(mlp.float()).double()
        out[l] = {"h": seen[("h", l)].double(), "a": a, "mlp": mlp, "contrib": contrib}
    return out


@torch.no_grad()
def naive_scores(lm, pairs: ParallelData, neuron_type: str, layers: list[int]):
    en = [naive_states(lm, s) for s in pairs.en]
    l2 = [naive_states(lm, s) for s in pairs.l2]
    n_layers, width = len(en[0]), en[0][0]["a"].shape[0]
    centroids = []
    for l in range(n_layers):
        if neuron_type == "type1":
            centroids.append(sum((e[l]["h"] + x[l]["h"]) / 2 for e, x in zip(en, l2, strict=True)) / len(l2))
        else:
            centroids.append(sum(x[l]["h"] for x in l2) / len(l2))
    scores = torch.full((n_layers, width), float("nan"), dtype=torch.float64)
    for l in layers:
        c = centroids[l]
        for i in range(width):
            total = 0.0
            for states in l2:
                r = states[l]["h"] - states[l]["mlp"]
                moved = r + states[l]["contrib"][i]
                total += float(F.cosine_similarity(moved, c, dim=0) - F.cosine_similarity(r, c, dim=0))
            scores[l, i] = total / len(l2)
    return scores, torch.stack(centroids)


@pytest.fixture(scope="module")
def pairs() -> ParallelData:
    rows = example_pairs(10)
    return ParallelData(lang="ja", en=[r["en"] for r in rows], l2=[r["ja"] for r in rows])


@pytest.mark.parametrize("model_type", supported_model_types())
@pytest.mark.parametrize("neuron_type", ["type1", "type2"])
def test_scores_equal_naive(tiny, pairs, model_type, neuron_type):
    lm = tiny(model_type)
    layers = list(range(lm.num_layers))  # every layer, so all code paths are compared
    result = detect(lm, pairs, neuron_type, layers=layers, top_n=50, batch_size=4, progress=False)
    expected, centroids = naive_scores(lm, pairs, neuron_type, layers)
    got = result.scores.double()
    spread = float(expected.max() - expected.min())
    assert spread > 1e-3, "degenerate test: scores do not vary"
    assert float((got - expected).abs().max()) <= 1e-5 * spread
    assert torch.allclose(result.centroids.double(), centroids, atol=1e-4)
    naive_top = torch.argsort(-expected.reshape(-1), stable=True)[:50]
    width = expected.shape[1]
    assert {(l, i) for l, i, _ in result.top} == {(int(k) // width, int(k) % width) for k in naive_top}
    assert [s for _, _, s in result.top] == sorted((s for _, _, s in result.top), reverse=True)


def test_scores_nan_outside_candidates(tiny, pairs):
    lm = tiny("llama")
    result = detect(lm, pairs, "type2", top_n=10, progress=False)
    assert result.layers == default_layers(lm.num_layers, "type2") == [3]
    assert torch.isnan(result.scores[:3]).all() and not torch.isnan(result.scores[3]).any()
    assert all(layer == 3 for layer, _, _ in result.top)


def test_default_layers_scale_with_depth():
    assert default_layers(32, "type1") == list(range(20))
    assert default_layers(32, "type2") == list(range(20, 32))
    assert default_layers(18, "type1") == list(range(11))


def test_parse_layers():
    assert parse_layers("0-2,5", 8) == [0, 1, 2, 5]
    assert parse_layers("3", 8) == [3]
    for bad in ("0-8", "x", "5-2", "-1"):
        with pytest.raises(InputError):
            parse_layers(bad, 8)


def test_paper_compat_changes_only_last_centroid(tiny, pairs):
    lm = tiny("llama")
    ours = detect(lm, pairs, "type2", top_n=5, progress=False)
    theirs = detect(lm, pairs, "type2", top_n=5, paper_compat=True, progress=False)
    assert torch.equal(ours.centroids[:-1], theirs.centroids[:-1])
    assert not torch.allclose(ours.centroids[-1], theirs.centroids[-1])


def test_older_name_kind_still_works_with_a_warning(tiny, pairs, tmp_path):
    """`kind`, the older name of `neuron_type`: the keyword of `detect`, `run` and `default_layers`
    and the attributes `Detection.kind` / `NeuronSet.type` warn and give the same values; the
    files keep the key "type"."""
    lm = tiny("llama")
    with pytest.warns(DeprecationWarning, match="neuron_type"):
        old = detect(lm, pairs, kind="type2", top_n=5)
    with pytest.warns(DeprecationWarning, match="neuron_type"):
        assert default_layers(32, kind="type2") == default_layers(32, "type2")
    with pytest.warns(DeprecationWarning, match="neuron_type"):
        ran = run(lm, pairs, config=DetectConfig(top_n=5), kind="type2")
    assert old.neuron_type == ran.neuron_type == "type2" and old.top == ran.top
    with pytest.raises(TypeError, match="both"):
        detect(lm, pairs, neuron_type="type1", kind="type2")
    with pytest.warns(DeprecationWarning, match="Detection.neuron_type"):
        assert old.kind == "type2"
    with pytest.warns(DeprecationWarning, match="NeuronSet.neuron_type"):
        assert old.neuron_set.type == "type2"
    old.save(tmp_path)
    assert json.loads((tmp_path / "neurons.json").read_text())["type"] == "type2"
    assert json.loads((tmp_path / "manifest.json").read_text())["type"] == "type2"
    assert Detection.load(tmp_path).neuron_type == read_neurons(tmp_path).neuron_type == "type2"
