"""`set`, `add` and `scale` map the down projection's input exactly as docs/method.md section 4 says
(a' = factor * a + shift) at the positions the policy names, on every adapter; per-row steering in
one batch equals each condition alone; the per-language means equal a direct per-token computation,
with and without the activation store."""

from __future__ import annotations

import math

import pytest
import torch

from transfer_neurons.analyses.means import language_means
from transfer_neurons.analyses.steer_grid import SteerMethod, steering
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import continuation_logliks, generate
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.metrics.fluency import repeated_ngram_rate
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.model.loading import attach_store
from transfer_neurons.testing import example_pairs

PROMPTS = ["Would you like to dance with me?", "I can't.", "The weather is fine today, isn't it?"]


def down_inputs(lm, layer, intervention=None):
    """The down projection's input of `layer` [B, T, m] as the module receives it (after the
    intervention's hook, which runs first), and the attention mask."""
    batch = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    seen = {}
    with apply_intervention(lm, intervention):
        down = lm.adapter.down_module(lm.model, layer)
        handle = down.register_forward_pre_hook(lambda _m, args: seen.update(a=args[0].detach().clone()))
        try:
            with torch.no_grad():
                lm.model(**batch)
        finally:
            handle.remove()
    return seen["a"], batch["attention_mask"]


@pytest.mark.parametrize("model_type", supported_model_types())
@pytest.mark.parametrize("positions", ["last", "prompt", "all"])
def test_set_add_scale_map_the_down_input_exactly(tiny, model_type, positions):
    lm = tiny(model_type)
    layer = lm.num_layers - 1
    scaled, fixed, added = [(layer, 1), (layer, 4)], [(layer, 2), (layer, 7)], [(layer, 3), (layer, 9)]
    iv = Intervention(
        tuple(sorted([(l, i, 2.5) for l, i in scaled] + [(l, i, 0.0) for l, i in fixed])),
        positions,
        shifts=tuple(sorted([(l, i, 1.75) for l, i in fixed] + [(l, i, -0.5) for l, i in added])),
    )
    before, _ = down_inputs(lm, layer)
    got, _ = down_inputs(lm, layer, iv)
    expected = before.clone()
    where = slice(-1, None) if positions == "last" else slice(None)  # plain forwards: every position is prompt
    for _, i in scaled:
        expected[:, where, i] = before[:, where, i] * 2.5
    for _, i in fixed:
        expected[:, where, i] = 1.75
    for _, i in added:
        expected[:, where, i] = before[:, where, i] - 0.5
    assert (expected - before).abs().max() > 1e-3, "degenerate"
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_steering_builds_each_kind(tiny):
    lm = tiny("llama")
    values = torch.arange(lm.num_layers * lm.mlp_width, dtype=torch.float32).reshape(lm.num_layers, -1)
    neurons, source = [(1, 2), (0, 5)], [(0, 5), (1, 9)]
    add = steering(neurons, SteerMethod.add, 2.0, values, source)
    assert add.shifts == ((0, 5, 2.0 * float(values[0, 5])), (1, 2, 2.0 * float(values[1, 2])))
    assert add.neurons == ((1, 9, 0.0),)  # the source set, less the steered neuron (0, 5)
    put = steering(neurons, SteerMethod.set, 0.5, values)
    assert put.neurons == ((0, 5, 0.0), (1, 2, 0.0)) and put.shifts[0][2] == 0.5 * float(values[0, 5])
    scale = steering(neurons, SteerMethod.scale, 3.0, None)
    assert scale.neurons == ((0, 5, 3.0), (1, 2, 3.0)) and scale.shifts == ()


def test_shifts_cannot_be_exported_to_lm_eval(tmp_path):
    iv = Intervention((), "all", shifts=((0, 1, 1.0),))
    with pytest.raises(InputError, match="cannot carry 'set' or 'add'"):
        iv.export_steering(tmp_path / "steer.pt", 16)
    with pytest.raises(InputError, match="finite"):
        Intervention((), "all", shifts=((0, 1, float("nan")),))


def test_saved_shifts_round_trip(tmp_path):
    iv = Intervention(((0, 1, 0.0),), "all", shifts=((0, 1, 2.0), (1, 3, -1.5)))
    iv.save(tmp_path / "iv.json")
    assert Intervention.load(tmp_path / "iv.json") == iv


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_per_row_steering_equals_each_condition_alone(tiny, model_type):
    lm = tiny(model_type)
    values = torch.randn(lm.num_layers, lm.mlp_width, generator=torch.Generator().manual_seed(0)) * 3
    neurons = [(layer, i) for layer in range(lm.num_layers) for i in range(0, lm.mlp_width, 5)]
    conditions = [
        None,
        steering(neurons, SteerMethod.add, 2.0, values),
        steering(neurons, SteerMethod.set, 1.0, values),
        steering(neurons, SteerMethod.scale, 4.0, None, neurons[:1]),
    ]
    alone = [generate(lm, PROMPTS, c, max_new_tokens=4, batch_size=len(PROMPTS)) for c in conditions]
    rows = [c for c in conditions for _ in PROMPTS]
    together = generate(lm, PROMPTS * len(conditions), rows, max_new_tokens=4, batch_size=len(rows))
    assert together == [text for texts in alone for text in texts]
    assert len({tuple(texts) for texts in alone}) > 1, "degenerate: steering changes nothing"


def direct_means(lm, sentences):
    """The mean of the down projection's input over every real token, sentence by sentence."""
    total = torch.zeros(lm.num_layers, lm.mlp_width, dtype=torch.float64)
    count = 0
    for text in sentences:
        ids = lm.tokenizer(text, return_tensors="pt").input_ids
        seen: dict[int, torch.Tensor] = {}
        handles = [
            lm.adapter.down_module(lm.model, layer).register_forward_pre_hook(
                lambda _m, args, layer=layer, seen=seen: seen.__setitem__(layer, args[0][0].double())
            )
            for layer in range(lm.num_layers)
        ]
        try:
            with torch.no_grad():
                lm.model(ids)
        finally:
            for handle in handles:
                handle.remove()
        total += torch.stack([seen[layer].sum(0) for layer in range(lm.num_layers)])
        count += ids.shape[1]
    return (total / count).float()


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_means_equal_a_direct_per_token_computation(tiny, tmp_path, model_type):
    lm = tiny(model_type)
    rows = example_pairs(10)
    sentences = {"ja": [r["ja"] for r in rows[:6]], "en": [r["en"] for r in rows[4:]]}
    got = language_means(lm, sentences, batch_size=4)
    for k, lang in enumerate(("ja", "en")):
        torch.testing.assert_close(got.means[k], direct_means(lm, sentences[lang]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.values("diffmean:ja"), got.means[0] - got.means[1])
    stored = attach_store(lm, tmp_path / "store", groups=("last", "sums"))
    try:
        first = language_means(stored, sentences, batch_size=3)  # fills the store
        again = language_means(stored, sentences, batch_size=5)  # reads it
    finally:
        lm.store = None
    torch.testing.assert_close(first.means, got.means, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again.means, first.means, atol=1e-6, rtol=1e-6)
    with pytest.raises(InputError, match="no statistics for language 'ko'"):
        got.values("mean:ko")


def test_continuation_logliks_equal_one_at_a_time(tiny):
    lm = tiny("llama")
    continuations = [" yes please", "", " no, thank you very much"]
    batched = continuation_logliks(lm, PROMPTS, continuations, batch_size=3)
    for prompt, text, got in zip(PROMPTS, continuations, batched, strict=True):
        if not text:
            assert math.isnan(got)
            continue
        ids = lm.tokenizer(prompt)["input_ids"] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        n = len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logprobs = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].float(), -1)
        expected = torch.stack([logprobs[t - 1, ids[t]] for t in range(len(ids) - n, len(ids))]).mean()
        assert abs(got - float(expected)) < 1e-4


def test_repeated_ngram_rate():
    assert repeated_ngram_rate([1, 2, 3, 1, 2, 3]) == 1 - 3 / 4  # (1,2,3) twice among 4 trigrams
    assert repeated_ngram_rate([1, 2]) == 0.0
