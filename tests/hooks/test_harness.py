"""The lm-evaluation-harness model applies an exported steering file exactly like the intervention, and
loads a built-in name or a .gguf file from its converted folder."""

from __future__ import annotations

import pytest
import torch

from transfer_neurons.hooks.harness import NeuronSteeredModel
from transfer_neurons.hooks.interventions import Intervention, apply_intervention
from transfer_neurons.model import loading
from transfer_neurons.model.builtin import BUILTIN_MODELS, BuiltinModel

NEURONS = [(0, 5), (1, 9), (3, 60)]


def test_harness_model_multiplies_like_the_intervention(tiny, model_folder, tmp_path):
    from lm_eval.api.registry import get_model

    assert get_model("transfer-neurons") is NeuronSteeredModel
    lm = tiny("llama")
    intervention = Intervention.of(NEURONS, 0.0, "all")
    intervention.export_steering(tmp_path / "steer.pt", lm.mlp_width)
    harness = NeuronSteeredModel(
        pretrained=str(model_folder("llama")), steer_path=str(tmp_path / "steer.pt"), device="cpu", dtype="float32"
    )
    ids = lm.tokenizer(["Would you like to dance with me?"], return_tensors="pt").input_ids
    with torch.no_grad():
        before = lm.model(ids).logits
        with apply_intervention(lm, intervention):
            expected = lm.model(ids).logits
    got = harness._model_call(ids)
    assert (expected - before).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["fake-model", "model.gguf"])
def test_harness_model_resolves_builtin_names_and_gguf(name, tiny, model_folder, tmp_path, monkeypatch):
    """A built-in name and a .gguf file load their converted folder (conversion faked: the tiny Llama)."""
    folder = model_folder("llama")
    resolved = []

    def convert(model, progress=True):
        resolved.append(getattr(model, "name", model))  # a built-in name, or the .gguf file's path
        return folder

    monkeypatch.setitem(BUILTIN_MODELS, "fake-model", BuiltinModel("fake-model", "fake-dist", "a fake model"))
    monkeypatch.setattr(loading, "pull", convert)
    monkeypatch.setattr(loading, "convert_gguf", convert)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    pretrained = name if name in BUILTIN_MODELS else str(tmp_path / name)
    intervention = Intervention.of(NEURONS, 0.0, "all")
    intervention.export_steering(tmp_path / "steer.pt", tiny("llama").mlp_width)
    harness = NeuronSteeredModel(pretrained=pretrained, steer_path=str(tmp_path / "steer.pt"), device="cpu")
    assert resolved == [name]
    assert harness.model.name_or_path == str(folder)
