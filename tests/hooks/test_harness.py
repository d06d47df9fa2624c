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


def test_harness_model_applies_a_delta_with_or_without_steering(model_folder, tmp_path):
    """`delta=DIR` gives the logits of load_model(..., delta=DIR), alone or under the steering file;
    a delta of another model is refused."""
    from transfer_neurons import load_model
    from transfer_neurons.artifacts import names
    from transfer_neurons.errors import InputError
    from transfer_neurons.hooks.harness import check_model_args
    from transfer_neurons.model.delta import Delta, Slice, neuron_slices
    from transfer_neurons.model.identity import model_key

    folder = str(model_folder("llama"))
    base = load_model(folder, device="cpu")
    gen = torch.Generator().manual_seed(0)
    params = dict(base.model.named_parameters())
    slices = {
        name: Slice(dim, index, torch.randn(params[name].index_select(dim, index).shape, generator=gen))
        for name, (dim, index) in neuron_slices(base.adapter, base.model, [(1, 4)]).items()
    }
    Delta(model_key(base.model, base.tokenizer)[0], folder, "neurons", [(1, 4)], slices, {}).save(
        tmp_path / names.DELTA
    )
    tuned = load_model(folder, device="cpu", delta=tmp_path)
    ids = base.tokenizer(["Would you like to dance with me?"], return_tensors="pt").input_ids
    intervention = Intervention.of(NEURONS, 0.0, "all")
    intervention.export_steering(tmp_path / "steer.pt", base.mlp_width)
    with torch.no_grad():
        expected = tuned.model(ids).logits
        with apply_intervention(tuned, intervention):
            steered = tuned.model(ids).logits
        assert (expected - base.model(ids).logits).abs().max() > 1e-3
    alone = NeuronSteeredModel(pretrained=folder, delta=str(tmp_path), device="cpu", dtype="float32")
    torch.testing.assert_close(alone._model_call(ids), expected, atol=1e-5, rtol=1e-5)
    both = NeuronSteeredModel(
        pretrained=folder, steer_path=str(tmp_path / "steer.pt"), delta=str(tmp_path), device="cpu", dtype="float32"
    )
    torch.testing.assert_close(both._model_call(ids), steered, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="steer_path=FILE, delta=DIR or both"):
        check_model_args({"pretrained": folder})
    with pytest.raises(InputError, match="was trained on another model"):
        NeuronSteeredModel(pretrained=str(model_folder("llama", seed=1)), delta=str(tmp_path), device="cpu")


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "transfer-neurons", "--model_args", "pretrained=M,steer_path=s.pt", "--tasks", "t"],
        ["--tasks", "t", "-a", "pretrained=M", "steer_path=s.pt", "--model=transfer-neurons"],
        ["--model", "transfer-neurons", "--model_args", '{"pretrained": "M", "steer_path": "s.pt"}'],
    ],
)
def test_model_options_read_every_spelling_of_lm_eval(args):
    from transfer_neurons.hooks.harness import model_options

    assert model_options(args) == ("transfer-neurons", {"pretrained": "M", "steer_path": "s.pt"})
