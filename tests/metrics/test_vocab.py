"""Neuron-page arithmetic against direct computations: the vocabulary projection through the model's
own final norm and head (Llama and Gemma-3, tied and untied embeddings), chunked top tokens, massive
dimensions, sentence ranking and box-plot numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from transfer_neurons import load_model
from transfer_neurons.metrics import vocab
from transfer_neurons.model.adapters import module_weight


@pytest.mark.parametrize(
    ("model_type", "tied"), [("llama", False), ("llama", True), ("gemma3_text", True), ("gemma3_text", False)]
)
def test_vocab_projection_equals_the_models_own_head(model_folder, model_type, tied):
    lm = load_model(str(model_folder(model_type, tie_word_embeddings=tied)), device="cpu", progress=False)
    head = lm.model.get_output_embeddings()
    same = head.weight.data_ptr() == lm.model.get_input_embeddings().weight.data_ptr()
    assert same == tied
    norm = lm.adapter.final_norm_module(lm.model)
    gain = lm.adapter.final_norm_gain(lm.model)
    assert not torch.allclose(gain, torch.ones_like(gain))  # random gains: a wrong convention shows
    u = lm.adapter.value_vectors(lm.model, 1)[[0, 5, 9]].float()
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6)))
    with torch.no_grad():  # the final norm divides by rms(u): undo it to get W_U (g * u)
        direct = head(norm(u)) * (u.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    got = vocab.vocab_projection(module_weight(head), gain, u)
    torch.testing.assert_close(got, direct, rtol=1e-4, atol=1e-4)
    ranking = vocab.top_tokens(module_weight(head), gain, u, k=7, rows=37)  # several chunks
    assert ranking.promoted_ids.tolist() == direct.argsort(dim=1, descending=True)[:, :7].tolist()
    assert ranking.suppressed_ids.tolist() == direct.argsort(dim=1)[:, :7].tolist()
    torch.testing.assert_close(
        ranking.promoted, direct.sort(dim=1, descending=True).values[:, :7], rtol=1e-4, atol=1e-4
    )


def test_top_tokens_in_chunks_equal_one_ranking():
    torch.manual_seed(0)
    w_u, u, gain = torch.randn(500, 8), torch.randn(4, 8), torch.rand(8) + 0.5
    w_u[17] = w_u[3]  # a tie: the lower id comes first
    logits = (u * gain) @ w_u.T
    for rows in (1, 64, 499, 10_000):
        ranking = vocab.top_tokens(w_u, gain, u, k=12, rows=rows)
        for i in range(4):
            order = sorted(range(500), key=lambda t, i=i: (-float(logits[i, t]), t))
            assert ranking.promoted_ids[i].tolist() == order[:12]
            low = sorted(range(500), key=lambda t, i=i: (float(logits[i, t]), t))
            assert ranking.suppressed_ids[i].tolist() == low[:12]
            assert ranking.suppressed[i].tolist() == pytest.approx(logits[i, low[:12]].tolist(), abs=1e-5)
    assert vocab.top_tokens(w_u, None, u, k=600).promoted_ids.shape == (4, 500)  # k capped at the vocabulary


def test_massive_dimensions_are_the_smallest_set_holding_half():
    rng = np.random.default_rng(1)
    for _ in range(50):
        mean = torch.from_numpy(rng.standard_normal(7) * rng.choice([1, 1, 20], size=7))
        squares = mean.double().pow(2)
        total = float(squares.sum())
        smallest = next(  # the size of the smallest subset, by brute force
            k
            for k in range(1, 8)
            if any(float(squares[list(d)].sum()) >= 0.5 * total for d in itertools.combinations(range(7), k))
        )
        dims = vocab.massive_dimensions(mean)
        if smallest <= 5:
            assert len(dims) == smallest and float(squares[dims].sum()) >= 0.5 * total
            assert squares[dims].tolist() == sorted(squares.tolist(), reverse=True)[:smallest]
        else:
            assert dims == []
    assert vocab.massive_dimensions(torch.tensor([0.0, 10.0, -1.0, 1.0])) == [1]
    assert vocab.massive_dimensions(torch.ones(20)) == []  # no few dimensions dominate
    assert vocab.massive_dimensions(torch.zeros(4)) == []


def test_dimension_share():
    u = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    assert vocab.dimension_share(u, [0]).tolist() == pytest.approx([9 / 25, 0.0, 0.0])
    assert vocab.dimension_share(u, [1, 2]).tolist() == pytest.approx([16 / 25, 1.0, 0.0])


def test_extremes_equal_a_brute_force_ranking():
    rng = np.random.default_rng(2)
    values = rng.integers(0, 6, size=40).astype(float)  # many ties
    top, bottom = vocab.extremes(values, 5)
    assert top == sorted(range(40), key=lambda i: (-values[i], i))[:5]
    assert bottom == sorted(range(40), key=lambda i: (values[i], i))[:5]
    assert vocab.extremes([2.0, 1.0], 5) == ([0, 1], [1, 0])


def test_box_stats():
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    stats = vocab.box_stats(values)
    assert (
        stats["n"] == 5
        and stats["mean"] == pytest.approx(22.0)
        and stats["sd"] == pytest.approx(np.std(values, ddof=1))
    )
    assert (stats["q1"], stats["median"], stats["q3"]) == (2.0, 3.0, 4.0)
    assert (stats["low"], stats["high"]) == (1.0, 4.0)  # 100 lies beyond 1.5 IQR: a flier
    assert vocab.box_stats([0.5])["sd"] == 0.0
