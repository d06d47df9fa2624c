"""Fine-tuning deltas: the slices of a neuron are exactly the parameters that make its activation and
its contribution (every architecture), a delta applied through `load_model` is the change it
describes, removing it restores the base model bit for bit, and a delta is refused on another model."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from transfer_neurons import load_model
from transfer_neurons.artifacts import names
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.model.delta import Delta, LowRank, Slice, apply_delta, neuron_slices, remove_delta
from transfer_neurons.model.identity import model_key

LAYER, NEURON = 1, 5
PROMPT = "Hello, world! こんにちは"


def _mlp_run(lm, model, x):
    """The activation `a` (down projection input) and the MLP output of layer LAYER for states x."""
    seen = {}
    down = lm.adapter.down_module(model, LAYER)
    handle = down.register_forward_pre_hook(lambda _m, args: seen.setdefault("a", args[0].detach().clone()))
    mlp = lm.adapter.mlp_module(model, LAYER)
    extra = {"residual": torch.zeros_like(x)} if "residual" in inspect.signature(mlp.forward).parameters else {}
    with torch.no_grad():
        out = mlp(x, **extra)  # BLOOM's MLP adds the residual it is given
    handle.remove()
    return seen["a"], out


@pytest.mark.parametrize("model_type", supported_model_types())
def test_a_neurons_slices_are_its_activation_and_its_value_vector(tiny, model_type):
    lm = tiny(model_type)
    model = copy.deepcopy(lm.model)  # the session's model stays untouched
    x = torch.randn(3, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    a, out = _mlp_run(lm, model, x)
    params = dict(model.named_parameters())
    spec = neuron_slices(lm.adapter, model, [(LAYER, NEURON)])
    with torch.no_grad():
        for name, (dim, index) in spec.items():
            params[name].index_add_(dim, index, torch.randn_like(params[name].index_select(dim, index)))
    a2, out2 = _mlp_run(lm, model, x)
    others = [i for i in range(a.shape[-1]) if i != NEURON]
    assert torch.equal(a2[..., others], a[..., others])  # no other neuron's activation moved
    assert not torch.allclose(a2[..., NEURON], a[..., NEURON])  # its own did: the input slices are its
    v, v2 = lm.adapter.value_vectors(lm.model, LAYER)[NEURON], lm.adapter.value_vectors(model, LAYER)[NEURON]
    assert not torch.equal(v, v2)
    if lm.adapter.post_mlp_norm is None:  # the output moves by exactly the neuron's own term a_i v_i
        expected = a2[..., NEURON, None] * v2 - a[..., NEURON, None] * v
        torch.testing.assert_close(out2 - out, expected, atol=1e-5, rtol=1e-4)


def _logits(lm) -> torch.Tensor:
    ids = lm.tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**ids).logits


def _delta(lm, seed: int = 0) -> Delta:
    """A delta with new values for two neurons' slices (layers 0 and 2) and a low-rank update of
    layer 3's down projection."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(lm.model.named_parameters())
    slices = {}
    for name, (dim, index) in neuron_slices(lm.adapter, lm.model, [(0, 3), (2, 7)]).items():
        shape = params[name].index_select(dim, index).shape
        slices[name] = Slice(dim, index, torch.randn(shape, generator=gen))
    down = next(n for n, m in lm.model.named_modules() if m is lm.adapter.down_module(lm.model, 3))
    weight = params[f"{down}.weight"]
    update = LowRank(
        torch.randn(2, weight.shape[1], generator=gen), torch.randn(weight.shape[0], 2, generator=gen), 0.5
    )
    key, _ = model_key(lm.model, lm.tokenizer)
    return Delta(key, lm.name, "neurons", [(0, 3), (2, 7)], slices, {f"{down}.weight": update})


def test_apply_and_remove(model_folder, tmp_path):
    folder = str(model_folder("llama"))
    base = load_model(folder, device="cpu")
    delta = _delta(base)
    delta.save(tmp_path / names.DELTA)
    tuned = load_model(folder, device="cpu", delta=tmp_path / names.DELTA)
    # the naive change: overwrite the rows / columns, add 0.5 * B @ A
    expected = {name: p.detach().clone() for name, p in base.model.named_parameters()}
    for name, s in delta.slices.items():
        if s.dim == 0:
            expected[name][s.index] = s.values
        else:
            expected[name][:, s.index] = s.values
    for name, u in delta.low_rank.items():
        expected[name] = expected[name] + 0.5 * u.b @ u.a
    for name, param in tuned.model.named_parameters():
        assert torch.equal(param, expected[name]), name
    assert tuned.delta is not None and tuned.delta_inputs()["delta"]["path"] == str(tmp_path / names.DELTA)
    assert not torch.equal(_logits(tuned), _logits(base))
    remove_delta(tuned)
    assert tuned.delta is None and tuned.delta_inputs() == {}
    assert torch.equal(_logits(tuned), _logits(base))
    for (name, a), (_, b) in zip(tuned.model.named_parameters(), base.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_saved_delta_reads_back(model_folder, tmp_path):
    lm = load_model(str(model_folder("llama")), device="cpu")
    delta = _delta(lm)
    delta.save(tmp_path / names.DELTA)
    again = Delta.read(tmp_path / names.DELTA)
    assert (again.base_key, again.base_model, again.method, again.neurons) == (
        delta.base_key,
        delta.base_model,
        delta.method,
        delta.neurons,
    )
    for name, s in delta.slices.items():
        assert again.slices[name].dim == s.dim and torch.equal(again.slices[name].values, s.values)
    assert again.parameters == delta.parameters


def test_delta_of_another_model_is_refused(model_folder, tmp_path):
    lm = load_model(str(model_folder("llama")), device="cpu")
    _delta(lm).save(tmp_path / names.DELTA)
    other = str(model_folder("llama", seed=1))
    with pytest.raises(InputError, match="was trained on another model"):
        load_model(other, device="cpu", delta=tmp_path / names.DELTA)
    tuned = load_model(str(model_folder("llama")), device="cpu", delta=tmp_path / names.DELTA)
    with pytest.raises(InputError, match="already carries a delta"):
        apply_delta(tuned, Delta.read(tmp_path / names.DELTA))


def test_a_killed_finetune_folder_is_refused(model_folder, tmp_path):
    lm = load_model(str(model_folder("llama")), device="cpu")
    _delta(lm).save(tmp_path / names.DELTA)
    (tmp_path / names.FINETUNE).write_text("{}", encoding="utf-8")  # a run killed before its manifest
    with pytest.raises(InputError, match="no complete result"):
        Delta.read(tmp_path)
    with pytest.raises(InputError, match="no complete result"):
        Delta.read(tmp_path / names.DELTA)


def test_the_store_key_is_that_of_the_tuned_weights(model_folder, tmp_path):
    folder = str(model_folder("llama"))
    base = load_model(folder, device="cpu", store=tmp_path / "store")
    _delta(base).save(tmp_path / names.DELTA)
    tuned = load_model(folder, device="cpu", store=tmp_path / "store", delta=tmp_path / names.DELTA)
    assert base.store is not None and tuned.store is not None
    assert tuned.store.key != base.store.key
    with pytest.raises(InputError, match="activation store"):
        remove_delta(tuned)
