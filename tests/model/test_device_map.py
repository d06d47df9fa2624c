"""A device map (accelerate hooks, weights offloaded to disk) gives the same detection as one device.

Only CPU is available in tests: layers alternate between "cpu" and "disk", so half the decoder
layers run from weights that accelerate loads on the fly and the modules hold meta tensors.
"""

from __future__ import annotations

import pytest
import torch

from transfer_neurons import ParallelData, detect, load_model
from transfer_neurons.testing import example_pairs


def alternating_map(lm) -> dict[str, str]:
    """Every module holding weights -> cpu, except odd decoder layers -> disk."""
    prefix = lm.adapter.layers + "."
    tensors = [*lm.model.named_parameters(remove_duplicate=False), *lm.model.named_buffers()]
    placement = {}
    for name, _ in tensors:
        module = name.rsplit(".", 1)[0]
        if module.startswith(prefix):
            index = int(module[len(prefix) :].split(".")[0])
            placement[f"{prefix}{index}"] = "disk" if index % 2 else "cpu"
        else:
            placement[module] = "cpu"
    return placement


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_device_map_with_offloaded_layers_equals_one_device(tiny, model_folder, tmp_path, monkeypatch, model_type):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path))
    rows = example_pairs(10)
    pairs = ParallelData(lang="ja", en=[r["en"] for r in rows], l2=[r["ja"] for r in rows])
    plain = tiny(model_type)
    mapped = load_model(str(model_folder(model_type)), device_map=alternating_map(plain), progress=False)
    assert mapped.adapter.down_module(mapped.model, 1).weight.device.type == "meta"  # really offloaded
    assert mapped.hidden_size == plain.hidden_size and mapped.mlp_width == plain.mlp_width
    layers = list(range(plain.num_layers))
    want = detect(plain, pairs, "type1", layers=layers, top_n=30, batch_size=4, progress=False)
    got = detect(mapped, pairs, "type1", layers=layers, top_n=30, batch_size=4, progress=False)
    assert torch.allclose(got.scores, want.scores, atol=1e-7, equal_nan=True)
    assert torch.allclose(got.centroids, want.centroids, atol=1e-6)
    assert got.top == want.top
    assert got.settings["device_map"][f"{plain.adapter.layers}.1"] == "disk"
    offload = tmp_path / "offload"
    assert any(offload.iterdir())
    del mapped
    assert not any(offload.iterdir())  # the offloaded weights go with the model
