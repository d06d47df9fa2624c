"""The lm-evaluation-harness model applies an exported steering file exactly like the intervention."""

from __future__ import annotations

import torch

from transfer_neurons.hooks.harness import NeuronSteeredModel
from transfer_neurons.hooks.interventions import Intervention, apply_intervention

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
