"""Interventions equal weight surgery, leave no trace, respect position policies; baselines."""

from __future__ import annotations

import inspect

import pytest
import torch

import transfer_neurons as tn
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import (
    Intervention,
    RandomBaseline,
    apply_intervention,
    deactivation_conditions,
    for_units,
    random_baseline,
    replicated,
)

NEURONS = [(0, 5), (0, 17), (2, 40), (3, 1)]
PROMPTS = ["Would you like to dance with me?", "I can't."]


def logits(lm, prompts=PROMPTS):
    batch = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return lm.model(**batch).logits


def logits_with_zeroed_columns(lm, neurons):
    """The reference: the same neurons removed by zeroing their columns of down_proj.weight."""
    saved = {}
    with torch.no_grad():
        for layer, neuron in neurons:
            weight = lm.adapter.down_module(lm.model, layer).weight
            saved[(layer, neuron)] = weight[:, neuron].clone()
            weight[:, neuron] = 0
        try:
            return logits(lm)
        finally:
            for (layer, neuron), column in saved.items():
                lm.adapter.down_module(lm.model, layer).weight[:, neuron] = column


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
@pytest.mark.parametrize("positions", ["prompt", "all"])
def test_deactivation_equals_zeroed_columns(tiny, model_type, positions):
    lm = tiny(model_type)
    before = logits(lm)
    with apply_intervention(lm, Intervention.of(NEURONS, 0.0, positions)):
        got = logits(lm)
    expected = logits_with_zeroed_columns(lm, NEURONS)
    assert (expected - before).abs().max() > 1e-3, "degenerate: the neurons do not matter"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def last_token_logits_zeroed(lm, prompt, neurons):
    """Reference for the `last` policy: the prompt minus its last token runs through the intact
    model into a KV cache; the last token alone then runs with the neurons' columns zeroed."""
    ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
    # the cache's keyword is `past_key_values` up to transformers 5.2x and `cache` after it
    name = "cache" if "cache" in inspect.signature(lm.model.forward).parameters else "past_key_values"
    with torch.no_grad():
        first = lm.model(ids[:, :-1], use_cache=True)
        cache = getattr(first, "cache", None) or first.past_key_values
        saved = {}
        for layer, neuron in neurons:
            weight = lm.adapter.down_module(lm.model, layer).weight
            saved[(layer, neuron)] = weight[:, neuron].clone()
            weight[:, neuron] = 0
        try:
            return lm.model(ids[:, -1:], use_cache=True, **{name: cache}).logits[0, -1]
        finally:
            for (layer, neuron), column in saved.items():
                lm.adapter.down_module(lm.model, layer).weight[:, neuron] = column


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_last_policy_equals_zeroed_columns_at_the_last_token(tiny, model_type):
    lm = tiny(model_type)
    before = logits(lm)
    with apply_intervention(lm, Intervention.of(NEURONS, 0.0, "last")):
        got = logits(lm)
    for row, prompt in enumerate(PROMPTS):  # left padding: the last position is the last real token
        torch.testing.assert_close(got[row, -1], last_token_logits_zeroed(lm, prompt, NEURONS), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, :-1], before[:, :-1], atol=0, rtol=0)
    assert (got[:, -1] - before[:, -1]).abs().max() > 1e-3


def test_amplification_scales_activation(tiny):
    lm = tiny("qwen2")
    sentences = ["It is cold today."]
    plain = collect(lm, sentences, ("act",), progress=False)["act"]
    with apply_intervention(lm, Intervention.of([(1, 3)], 2.5, "last")):
        scaled = collect(lm, sentences, ("act",), progress=False)["act"]
    assert torch.allclose(scaled[1, 0, 3], 2.5 * plain[1, 0, 3])
    assert torch.equal(scaled[1, 0, :3], plain[1, 0, :3]) and torch.equal(scaled[0], plain[0])


def test_model_unchanged_after_context(tiny):
    lm = tiny("gemma3_text")
    before = logits(lm)
    with apply_intervention(lm, Intervention.of(NEURONS, 3.0, "all")):
        assert not torch.allclose(logits(lm), before)
    assert torch.equal(logits(lm), before)
    for module in lm.model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks


def _decode_activations(lm, intervention, layer, neuron):
    """Activation of one neuron at the newest token, for every forward call of generate."""
    seen = []
    down = lm.adapter.down_module(lm.model, layer)
    handle = down.register_forward_hook(lambda m, args, out: seen.append(args[0][:, -1, neuron].clone()))
    try:
        generate(lm, PROMPTS, intervention, max_new_tokens=4)
    finally:
        handle.remove()
    return seen  # seen[0]: prefill (last prompt token), seen[1:]: generated tokens


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_generate_prompt_policy_leaves_generated_tokens_untouched(tiny, model_type):
    lm = tiny(model_type)
    layer, neuron = NEURONS[2]
    normal = _decode_activations(lm, None, layer, neuron)
    prompt = _decode_activations(lm, Intervention.of(NEURONS, 0.0, "prompt"), layer, neuron)
    every = _decode_activations(lm, Intervention.of(NEURONS, 0.0, "all"), layer, neuron)
    assert len(prompt) == len(every) == 4
    assert torch.all(prompt[0] == 0) and torch.all(every[0] == 0)
    assert all(torch.all(step == 0) for step in every[1:])
    assert all(torch.any(step != 0) for step in prompt[1:])
    # untouched: the neuron fires as it would for the same generated tokens without intervention
    assert not torch.equal(prompt[0], normal[0])


def test_save_load_roundtrip(tmp_path):
    iv = Intervention.of(NEURONS, 1.5, "prompt")
    iv.save(tmp_path / "iv.json")
    assert Intervention.load(tmp_path / "iv.json") == iv


def test_from_neurons_json(tmp_path):
    path = tmp_path / "neurons.json"
    path.write_text('{"type": "type1", "lang": "ja", "top": [[2, 7, 0.5], [0, 3, 0.4], [1, 1, 0.1]]}')
    iv = Intervention.from_neurons_json(path, 2)
    assert iv.neurons == ((0, 3, 0.0), (2, 7, 0.0)) and iv.positions == "last"
    with pytest.raises(InputError, match="--top-k 4"):
        Intervention.from_neurons_json(path, 4)


def test_export_steering(tmp_path):
    iv = Intervention.of(NEURONS, 0.0)
    iv.export_steering(tmp_path / "steer.pt", width=64)
    config = torch.load(tmp_path / "steer.pt", weights_only=True)
    assert sorted(config) == ["layers.0.mlp.act_fn", "layers.2.mlp.act_fn", "layers.3.mlp.act_fn"]
    vector = config["layers.0.mlp.act_fn"]["steering_vector"]
    assert vector.shape == (1, 64) and config["layers.0.mlp.act_fn"]["action"] == "multiply"
    assert vector[0, 5] == 0 and vector[0, 17] == 0 and (vector[0].sum() == 62)


def test_bad_position_policy():
    with pytest.raises(InputError, match="position policy"):
        Intervention.of(NEURONS, 0.0, "middle")


def test_random_baseline_per_layer():
    controlled = Intervention.of([(0, i) for i in range(10)] + [(3, 2), (3, 9)], 0.0)
    base = random_baseline(controlled, width=64, seed=7)
    assert base.counts_per_layer() == controlled.counts_per_layer() == {0: 10, 3: 2}
    assert not set(base.pairs()) & set(controlled.pairs())
    assert random_baseline(controlled, width=64, seed=7) == base
    assert random_baseline(controlled, width=64, seed=8) != base


def test_random_baseline_uniform():
    controlled = Intervention.of([(0, i) for i in range(30)], 0.0)
    base = random_baseline(controlled, width=64, mode="uniform", layers=[0, 1, 2], seed=1)
    assert len(base.neurons) == 30
    assert {layer for layer, _ in base.pairs()} <= {0, 1, 2} and len(base.counts_per_layer()) > 1
    assert not set(base.pairs()) & set(controlled.pairs())


def test_generation_stop_strings_cut_after_the_stop(tiny):
    lm = tiny("llama")
    prompts = ["Would you like to dance with me?", "I can't."]
    full = generate(lm, prompts, max_new_tokens=12, batch_size=2)
    stopped = generate(lm, prompts, max_new_tokens=12, batch_size=2, stop_strings=["e"])
    for whole, cut in zip(full, stopped, strict=True):
        assert whole.startswith(cut)
        if "e" in whole:  # the stop string ends the text (it may share a token with what follows)
            assert "e" in cut and cut.index("e") >= len(cut) - 4


def test_of_takes_detection_triples_and_the_package_exports_it():
    triples = [(2, 40, 0.9), (0, 5, 0.5)]
    assert tn.Intervention.of(triples, 4.0) == Intervention.of([(2, 40), (0, 5)], 4.0)
    assert Intervention.of(triples).neurons == ((0, 5, 0.0), (2, 40, 0.0))  # the score is not a factor
    assert tn.apply_intervention is apply_intervention and tn.generate is generate


def test_library_functions_are_quiet_by_default():
    for function in (tn.capture, collect, tn.detect, tn.load_model):
        assert inspect.signature(function).parameters["progress"].default is False, function


SENTENCES = ["Would you like to dance with me?", "I can't.", "The cat sleeps on the warm mat today.", "Yes", "No way"]


def _baseline(width: int = 64, seeds: int = 3) -> RandomBaseline:
    controlled = Intervention.of(NEURONS, 0.0, "last")
    draws = tuple(random_baseline(controlled, width, seed=s) for s in range(seeds))
    return RandomBaseline(draws, tuple(range(seeds)))


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_per_row_interventions_equal_each_row_run_alone(tiny, model_type):
    """A multi-seed baseline runs every draw on every sentence in shared passes: each row's states
    equal those captured with its own draw applied to it alone (capture sorts by length, so rows move)."""
    lm = tiny(model_type)
    baseline = _baseline(lm.mlp_width)
    runs, per_unit = replicated(baseline, SENTENCES), baseline.per_unit(len(SENTENCES))
    together = collect(lm, runs, ("h", "act"), batch_size=4, intervention=per_unit)
    for k, sentence in enumerate(runs):
        alone = collect(lm, [sentence], ("h", "act"), intervention=per_unit[k])
        for part in ("h", "act"):
            torch.testing.assert_close(together[part][:, k], alone[part][:, 0], atol=1e-5, rtol=1e-4)
    plain = collect(lm, runs, ("h",), batch_size=4)
    assert (plain["h"] - together["h"]).abs().max() > 1e-4, "degenerate: the draws do not matter"


def test_per_row_generation_equals_each_prompt_alone(tiny):
    lm = tiny("llama")
    baseline = RandomBaseline(tuple(Intervention(d.neurons, "all") for d in _baseline(lm.mlp_width).draws), (0, 1, 2))
    runs, per_unit = replicated(baseline, SENTENCES), baseline.per_unit(len(SENTENCES))
    together = generate(lm, runs, per_unit, max_new_tokens=4, batch_size=4)
    alone = [generate(lm, [s], per_unit[k], max_new_tokens=4)[0] for k, s in enumerate(runs)]
    assert together == alone


def test_random_baseline_runs_every_draw_on_every_unit_and_is_saved(tmp_path):
    baseline = _baseline()
    rows = baseline.per_unit(4)
    assert rows == [baseline.draws[s] for s in range(3) for _ in range(4)]  # draw by draw
    assert replicated(baseline, ["a", "b"]) == ["a", "b"] * 3 and replicated(None, ["a", "b"]) == ["a", "b"]
    assert for_units(baseline, 4) == rows and for_units(None, 4) is None
    baseline.save(tmp_path / "baseline.json")
    assert RandomBaseline.load(tmp_path / "baseline.json") == baseline


def test_deactivation_conditions_first_draw_is_the_single_seed_baseline(tmp_path):
    from transfer_neurons.artifacts.neurons import NeuronSet

    neurons = NeuronSet(
        neuron_type="type1", lang="ja", model="m", layers=(0, 1, 2, 3), top=tuple((l, i, 1.0) for l, i in NEURONS)
    )
    one = deactivation_conditions(neurons, 4, 4, 64, seed=7)["random"]
    five = deactivation_conditions(neurons, 4, 4, 64, seed=7, seeds=5)["random"]
    assert isinstance(one, RandomBaseline) and isinstance(five, RandomBaseline)
    assert five.draws[0] == one.draws[0] and five.seeds == (7, 8, 9, 10, 11)
    assert len(set(five.draws)) == 5
