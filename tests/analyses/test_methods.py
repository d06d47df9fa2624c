"""The centred score against a naive computation with the pool mean subtracted; LAPE's streamed
activation probabilities and AP's per-sentence medians against unbatched forward passes; AP against
scikit-learn; every method through the entry point a comparison calls, and its saved folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from test_detect import naive_states

from transfer_neurons import ParallelData, detect
from transfer_neurons.analyses import detect as detect_module
from transfer_neurons.analyses.detect import DetectConfig, Detection
from transfer_neurons.analyses.methods import ap, detect_method, lape_probabilities, sentence_medians
from transfer_neurons.analyses.pool import Sentences, pool_parts
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.testing import example_pairs


@pytest.fixture(scope="module")
def pairs() -> ParallelData:
    rows = example_pairs(8)
    return ParallelData(lang="ja", en=[r["en"] for r in rows], l2=[r["ja"] for r in rows])


@pytest.fixture(scope="module")
def korean() -> Sentences:
    """A stand-in third language: Japanese sentences reversed (as the study tests do)."""
    return Sentences("ko", [r["ja"][::-1] for r in example_pairs(14)[8:]], "ko.txt")


@torch.no_grad()
def naive_centred_scores(lm, pairs, others: list[str], neuron_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """S_i = mean_k [cos(r_k - mu + a_i u_i, c - mu) - cos(r_k - mu, c - mu)], every layer, each
    neuron's moved vector formed explicitly; mu = the mean layer output over en, L2 and `others`."""
    en = [naive_states(lm, s) for s in pairs.en]
    l2 = [naive_states(lm, s) for s in pairs.l2]
    pool = en + l2 + [naive_states(lm, s) for s in others]
    n_layers, width = len(en[0]), en[0][0]["a"].shape[0]
    scores = torch.zeros(n_layers, width, dtype=torch.float64)
    means = []
    for l in range(n_layers):
        mu = sum(x[l]["h"] for x in pool) / len(pool)
        sides = [e[l]["h"] / 2 + x[l]["h"] / 2 for e, x in zip(en, l2, strict=True)] if neuron_type == "type1" else None
        c = (sum(sides) if sides else sum(x[l]["h"] for x in l2)) / len(l2) - mu
        for states in l2:
            r = states[l]["h"] - states[l]["mlp"] - mu
            moved = r[None] + states[l]["contrib"]  # row i: r - mu + a_i u_i
            scores[l] += F.cosine_similarity(moved, c[None], dim=1) - F.cosine_similarity(r, c, dim=0)
        means.append(mu)
    return scores / len(l2), torch.stack(means)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
@pytest.mark.parametrize("neuron_type", ["type1", "type2"])
def test_centred_scores_equal_naive(tiny, pairs, korean, model_type, neuron_type):
    lm = tiny(model_type)
    layers = list(range(lm.num_layers))
    result = detect(lm, pairs, neuron_type, layers=layers, top_n=20, batch_size=3, pool=pool_parts(pairs, [korean]))
    expected, mu = naive_centred_scores(lm, pairs, korean.sentences, neuron_type)
    spread = float(expected.max() - expected.min())
    assert spread > 1e-3, "degenerate test: scores do not vary"
    assert float((result.scores.double() - expected).abs().max()) <= 1e-5 * spread
    assert torch.allclose(result.reference_mean.double(), mu, atol=1e-4)
    raw = detect(lm, pairs, neuron_type, layers=layers, top_n=20, batch_size=3)
    assert not torch.allclose(raw.scores, result.scores, atol=1e-4)  # centring changes the scores
    assert result.method == "tn-centred" and result.neuron_set.method == "tn-centred"
    assert result.pool == {"files": [None, "ko.txt"], "sizes": {"en": 8, "ja": 8, "ko": 6}, "langs": ["en", "ja", "ko"]}


def test_centred_equals_raw_when_the_mean_is_zero(tiny, pairs, korean, monkeypatch):
    lm = tiny("llama")
    raw = detect(lm, pairs, "type1", top_n=30, batch_size=4)
    monkeypatch.setattr(detect_module, "_pool_mean", lambda pool, mean_of: torch.zeros(4, 32, dtype=torch.float64))
    centred = detect(lm, pairs, "type1", top_n=30, batch_size=4, pool=pool_parts(pairs, [korean]))
    assert torch.equal(centred.scores.nan_to_num(), raw.scores.nan_to_num()) and centred.top == raw.top


def test_centred_score_needs_three_languages(tiny, pairs):
    with pytest.raises(InputError, match="at least 3 languages; the pool has 2 \\(en, ja\\)"):
        detect(tiny("llama"), pairs, "type1", pool=pool_parts(pairs))


def _site(lm, layer):
    """The activation function's module named directly: `act_fn` (gated) or GPT-2's `act`."""
    mlp = lm.adapter.mlp_module(lm.model, layer)
    return mlp.act_fn if hasattr(mlp, "act_fn") else mlp.act


@torch.no_grad()
def naive_activations(lm, sentence: str) -> torch.Tensor:
    """The activation function's output at every token of one unpadded sentence, [L, T, m]."""
    seen = {}
    handles = [
        _site(lm, l).register_forward_hook(lambda m, i, o, l=l: seen.__setitem__(l, o[0].float()))
        for l in range(lm.num_layers)
    ]
    lm.model(input_ids=lm.tokenizer(sentence, return_tensors="pt").input_ids)
    for handle in handles:
        handle.remove()
    return torch.stack([seen[l] for l in range(lm.num_layers)])


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_lape_probabilities_equal_a_direct_count(tiny, pairs, korean, model_type):
    lm = tiny(model_type)
    groups = {"en": pairs.en, "ja": pairs.l2, "ko": korean.sentences}
    layers = list(range(lm.num_layers))
    got = lape_probabilities(lm, groups, layers, batch_size=3)  # padded batches
    direct = []
    for sentences in groups.values():
        values = [naive_activations(lm, s) for s in sentences]
        positives = sum((v > 0).sum(1).double() for v in values)
        direct.append(positives / sum(v.shape[1] for v in values))
    expected = torch.stack(direct, -1)
    assert 0.05 < float(expected.mean()) < 0.95, "degenerate test: activations of one sign"
    assert torch.equal(got, expected)


@pytest.mark.parametrize("model_type", supported_model_types())
def test_lape_runs_on_every_architecture(tiny, pairs, korean, model_type):
    """Every adapter has an activation site: the shares have the model's shape and vary."""
    lm = tiny(model_type)
    got = lape_probabilities(lm, {"en": pairs.en[:3], "ja": pairs.l2[:3], "ko": korean.sentences[:3]}, [0, 1])
    assert got.shape == (2, lm.mlp_width, 3)
    assert 0 < float(got.mean()) < 1 and float(got.max()) <= 1


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_ap_equals_sklearn_on_the_sentence_medians(tiny, pairs, korean, model_type):
    lm = tiny(model_type)
    layers = list(range(lm.num_layers))
    sentences = pairs.en + pairs.l2 + korean.sentences
    medians = sentence_medians(lm, sentences, layers, batch_size=5)
    direct = torch.stack([_median(lm, s) for s in sentences])
    assert torch.allclose(medians, direct, atol=1e-5)

    result = ap(lm, "ja", pool_parts(pairs, [korean]), DetectConfig(top_n=10, batch_size=5))
    labels = np.array([False] * 8 + [True] * 8 + [False] * 6)
    flat = medians.reshape(len(sentences), -1).numpy()
    expected = np.array([average_precision_score(labels, flat[:, j]) for j in range(flat.shape[1])])
    assert np.allclose(result.scores.reshape(-1).double().numpy(), expected, rtol=0, atol=1e-6)
    assert result.top[0][2] == pytest.approx(expected.max(), abs=1e-6)


def _median(lm, sentence: str) -> torch.Tensor:
    """The per-neuron median over one sentence's tokens (numpy's: the mean of the middle two), [L, m]."""
    return torch.from_numpy(np.median(naive_activations(lm, sentence).numpy(), axis=1))


@pytest.mark.parametrize("method", ["tn", "tn-centred", "lape", "ap"])
def test_every_method_through_the_entry_point(tiny, pairs, korean, tmp_path, method):
    lm = tiny("llama")
    config = DetectConfig(top_n=12, batch_size=4)
    result = detect_method(lm, method, pairs, [korean], config, "type2", source="en-ja.jsonl")
    assert result.method == method and result.lang == "ja" and len(result.top) <= 12
    assert result.neuron_type == ("type2" if method.startswith("tn") else None)
    assert result.layers == ([3] if method.startswith("tn") else [0, 1, 2, 3])
    if method != "tn":
        assert result.pool["files"] == ["en-ja.jsonl", "ko.txt"]
    result.save(tmp_path)
    neurons = json.loads((tmp_path / "neurons.json").read_text())
    assert neurons["method"] == method and neurons["type"] == result.neuron_type
    again = Detection.load(tmp_path)
    assert again.method == method and again.neuron_type == result.neuron_type and again.top == result.top
    assert again.pool == result.pool and torch.allclose(again.scores, result.scores, equal_nan=True)
    assert (again.centroids is None) == (method in ("lape", "ap"))
    assert any(f"method {method}" in line for line in again.summary_lines())


def test_language_neuron_methods_need_enough_languages(tiny, pairs):
    lm = tiny("llama")
    config = DetectConfig(top_n=5)
    with pytest.raises(InputError, match="--method lape needs sentences of at least 3 languages"):
        detect_method(lm, "lape", pairs, [], config)
    with pytest.raises(InputError, match="--method ap needs sentences of at least 2 languages"):
        detect_method(lm, "ap", Sentences("ja", pairs.l2), [], config)
    with pytest.raises(InputError, match="needs en/L2 pairs"):
        detect_method(lm, "tn", Sentences("ja", pairs.l2), [], config)
