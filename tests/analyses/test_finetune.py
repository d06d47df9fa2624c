"""Neuron-targeted fine-tuning on tiny models: only the chosen slices change (against a naive list of
each architecture's rows and columns), the loss falls on a memorisable text, the delta reproduces the
trained model on a fresh copy and its removal restores the base, LoRA's rank matches the parameter
count, the random baseline keeps the per-layer counts, and the result reads back."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from transfer_neurons import load_model
from transfer_neurons.analyses import finetune
from transfer_neurons.analyses.finetune import FinetuneBaseline, FinetuneConfig, FinetuneResult
from transfer_neurons.analyses.finetune_eval import EvalSet
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.model.delta import remove_delta
from transfer_neurons.testing import example_pairs

ROWS = example_pairs(60)
TRAIN = [row["ja"] for row in ROWS[:40]]
EVAL = ParallelData("ja", [row["en"] for row in ROWS[40:]], [row["ja"] for row in ROWS[40:]])
TOP = ((0, 3, 0.9), (0, 10, 0.8), (1, 7, 0.7), (2, 7, 0.6), (2, 40, 0.5), (3, 1, 0.4))
NEURONS = NeuronSet(TOP, lang="ja", neuron_type="type1", layers=(0, 1, 2, 3))
PROMPT = "今日はいい天気です。"


def _naive(model_type: str, layer: int, i: int) -> list[tuple[str, tuple]]:
    """Where neuron (layer, i) lives, written out per architecture: (parameter, index)."""
    if model_type == "gpt2":  # Conv1D weights are [in, out]
        mlp = f"transformer.h.{layer}.mlp"
        return [(f"{mlp}.c_fc.weight", (slice(None), i)), (f"{mlp}.c_fc.bias", (i,)), (f"{mlp}.c_proj.weight", (i,))]
    mlp = f"model.layers.{layer}.mlp"
    return [
        (f"{mlp}.gate_proj.weight", (i,)),
        (f"{mlp}.up_proj.weight", (i,)),
        (f"{mlp}.down_proj.weight", (slice(None), i)),
    ]


def _data() -> EvalSet:
    return EvalSet("ja", EVAL.l2, EVAL)


def _config(**extra) -> FinetuneConfig:
    return FinetuneConfig(**{"top_k": 6, "steps": 3, "lr": 0.05, "batch_size": 4, "k": 3, "bootstrap": 0, **extra})


def _logits(lm) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(**lm.tokenizer(PROMPT, return_tensors="pt")).logits


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_only_the_chosen_slices_change(model_folder, model_type):
    folder = str(model_folder(model_type))
    base = dict(load_model(folder, device="cpu").model.named_parameters())
    lm = load_model(folder, device="cpu")
    result = finetune.run(lm, NEURONS, TRAIN, _data(), _config())
    assert result.delta.neurons == sorted((l, i) for l, i, _ in TOP)
    after = dict(lm.model.named_parameters())
    chosen = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in base.items()}
    for layer, i, _ in TOP:
        for name, index in _naive(model_type, layer, i):
            chosen[name][index] = True
            assert not torch.equal(after[name][index], base[name][index]), (name, index)  # each slice moved
    for name, param in after.items():
        assert torch.equal(param[~chosen[name]], base[name][~chosen[name]]), name  # nothing else did
    assert result.parameters["trainable"] == result.parameters["target"] == sum(m.sum() for m in chosen.values())


def test_the_loss_falls_on_a_memorisable_text(model_folder):
    lm = load_model(str(model_folder("llama")), device="cpu")
    many = NeuronSet(tuple((l, i, 0.0) for l in range(4) for i in range(0, 64, 2)), lang="ja")
    text = ParallelData("ja", [row["en"] for row in ROWS[:5]], TRAIN[:5])
    data = EvalSet("ja", text.l2, text)
    result = finetune.run(lm, many, TRAIN[:5] * 4, data, _config(top_k=128, steps=40, lr=0.1, batch_size=4))
    first, last = result.losses[0], sum(result.losses[-5:]) / 5
    assert last < 0.85 * first, result.losses  # random tiny weights: about 6.0 -> 4.7 nats
    assert sum(result.losses[-10:]) < sum(result.losses[-20:-10])  # still falling
    ppl = result.summary  # measured on the memorised sentences themselves: perplexity falls with the loss
    assert ppl["after"]["l2_perplexity"].value < 0.5 * ppl["before"]["l2_perplexity"].value


@pytest.mark.parametrize("baseline", [None, FinetuneBaseline.lora])
def test_the_delta_reproduces_the_trained_model_and_removal_restores_the_base(model_folder, tmp_path, baseline):
    folder = str(model_folder("llama"))
    base_logits = _logits(load_model(folder, device="cpu"))
    lm = load_model(folder, device="cpu")
    result = finetune.run(lm, NEURONS, TRAIN, _data(), _config(baseline=baseline, bootstrap=20))
    result.save(tmp_path / "ft")
    trained = _logits(lm)
    assert not torch.equal(trained, base_logits)
    fresh = load_model(folder, device="cpu", delta=tmp_path / "ft")
    assert torch.equal(_logits(fresh), trained)
    remove_delta(fresh)
    assert torch.equal(_logits(fresh), base_logits)
    remove_delta(lm)  # the trained model itself carries the delta too
    assert torch.equal(_logits(lm), base_logits)
    again = FinetuneResult.load(tmp_path / "ft")
    assert again.losses == result.losses and again.parameters == result.parameters
    assert again.summary["after"]["mean_mknn"] == result.summary["after"]["mean_mknn"]
    assert again.change == result.change and again.summary["before"]["l2_perplexity"].ci is not None


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_lora_rank_matches_the_parameter_count_within_one_rank_step(model_folder, model_type):
    lm = load_model(str(model_folder(model_type)), device="cpu")
    d, m = lm.hidden_size, lm.mlp_width
    per_neuron = 3 * d if model_type == "llama" else 2 * d + 1  # gate + up rows and a down column; GPT-2: bias
    per_rank_per_layer = 3 * (d + m) if model_type == "llama" else 2 * (d + m)
    for top_k in (1, 6):
        config = _config(top_k=top_k, baseline=FinetuneBaseline.lora)
        tuning, counts = finetune.tuning_for(lm, NEURONS, config)
        layers = {layer for layer, _, _ in TOP[:top_k]}
        assert counts["target"] == top_k * per_neuron
        assert counts["lora_rank_step"] == per_rank_per_layer * len(layers)
        assert counts["trainable"] == counts["lora_rank"] * counts["lora_rank_step"]
        assert abs(counts["trainable"] - counts["target"]) <= counts["lora_rank_step"] / 2 or counts["lora_rank"] == 1
        tuning.finish("key")  # unwraps the model
        assert not any("lora" in name for name, _ in lm.model.named_parameters())


def test_the_random_baseline_keeps_the_layers_and_avoids_the_set(model_folder):
    lm = load_model(str(model_folder("llama")), device="cpu")
    config = _config(baseline=FinetuneBaseline.random)
    drawn = finetune.chosen_neurons(lm, NEURONS, config)
    top = {(l, i) for l, i, _ in TOP}
    assert Counter(l for l, _ in drawn) == Counter(l for l, _ in top)
    assert not set(drawn) & top and len(set(drawn)) == len(drawn)
    assert finetune.chosen_neurons(lm, NEURONS, config) == drawn
    assert finetune.chosen_neurons(lm, NEURONS, _config(baseline=FinetuneBaseline.random, seed=1)) != drawn
