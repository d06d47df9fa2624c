"""Capture on every supported architecture: batched equals unbatched, and the decomposition is exact:
sum_i a_i u_i is what the MLP adds to the residual stream, and r = h - mlp is the stream without it."""

from __future__ import annotations

import pytest
import torch

from transfer_neurons import capture
from transfer_neurons.hooks.capture import collect as tn_collect
from transfer_neurons.metrics.scoring import effective_values
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.testing import example_pairs

PARTS = ("h", "mlp", "act", "scale")
MODEL_TYPES = supported_model_types()


def collect(lm, sentences, batch_size, parts=PARTS, layers=None):
    """Captured tensors per part and layer, [n, ...], in input order."""
    layers = sorted(range(lm.num_layers) if layers is None else layers)
    stacked = tn_collect(lm, sentences, parts, layers, batch_size, progress=False)
    return {p: dict(zip(layers, stacked[p], strict=True)) for p in parts}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_batched_equals_unbatched(tiny, model_type):
    lm = tiny(model_type)
    rows = example_pairs(8)
    sentences = [r["en"] for r in rows] + [r["ja"] for r in rows]
    lengths = {len(lm.tokenizer(s).input_ids) for s in sentences}
    assert len(lengths) >= 4, "sentences of different lengths are needed for padding to matter"
    single = collect(lm, sentences, batch_size=1)
    batched = collect(lm, sentences, batch_size=len(sentences))  # one batch: maximal padding
    for part in PARTS:
        for layer in range(lm.num_layers):
            diff = (single[part][layer] - batched[part][layer]).abs().max()
            assert diff <= 1e-4, (part, layer, float(diff))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_contributions_sum_to_what_the_mlp_adds(tiny, model_type):
    """(a * s) @ u (+ the bias, not a neuron's) == mlp, and h - mlp equals the layer's output with
    the down projection silenced."""
    lm = tiny(model_type)
    sentences = [r["ja"] for r in example_pairs(6)]
    got = collect(lm, sentences, batch_size=3)
    for layer in range(lm.num_layers):
        gain = lm.adapter.post_norm_gain(lm.model, layer)
        values = effective_values(lm.adapter.value_vectors(lm.model, layer), gain)
        scale = got["scale"][layer][:, None]
        summed = (got["act"][layer] * scale) @ values
        down = lm.adapter.down_module(lm.model, layer)
        if down.bias is not None:
            summed += scale * effective_values(down.bias[None], gain)
        real = got["mlp"][layer]
        assert real.abs().max() > 1e-3  # not degenerate
        assert torch.allclose(summed, real, atol=1e-5, rtol=1e-4), float((summed - real).abs().max())

        # What the MLP really adds: the same forward pass with the down projection's output (bias
        # included) replaced by zeros leaves exactly r^l = h^l - mlp^l at this layer's output.
        handle = down.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        try:
            silenced = collect(lm, sentences, batch_size=3, parts=("h",), layers=[layer])["h"][layer]
        finally:
            handle.remove()
        r = got["h"][layer] - real
        assert torch.allclose(r, silenced, atol=1e-5, rtol=1e-5), float((r - silenced).abs().max())
        assert (got["h"][layer] - silenced).abs().max() > 1e-3  # the MLP does add something


def test_last_token_is_last_real_token(tiny):
    lm = tiny("llama")
    short, long = "Hi.", "Would you like to dance with me tonight?"
    with torch.no_grad():
        full = lm.model(**lm.tokenizer(short, return_tensors="pt"), output_hidden_states=True)
    got = collect(lm, [short, long], batch_size=2, parts=("h",))
    assert torch.allclose(got["h"][0][0], full.hidden_states[1][0, -1], atol=1e-5)


def test_capture_adds_bos(tiny):
    lm = tiny("llama")
    assert lm.tokenizer("Hello").input_ids[0] == lm.tokenizer.bos_token_id


def test_hooks_removed_after_capture(tiny):
    lm = tiny("gemma3_text")
    list(capture(lm, ["a b c", "d e"], PARTS, progress=False))
    for module in lm.model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_empty_input_yields_nothing(tiny):
    assert list(capture(tiny("llama"), [], PARTS, progress=False)) == []


def test_stop_early_skips_later_layers(tiny):
    lm = tiny("llama")
    calls = []
    handle = lm.adapter.decoder_layers(lm.model)[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        list(capture(lm, ["x y"], ("h",), layers=[0, 1], progress=False))
    finally:
        handle.remove()
    assert calls == []
