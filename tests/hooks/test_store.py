"""The activation store (docs/method.md section 10): reads equal direct captures on every architecture, each
distinct sentence is forwarded once, and a killed, damaged or foreign store is never trusted."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from transfer_neurons.artifacts import store as store_module
from transfer_neurons.artifacts.store import INDEX, ActivationStore
from transfer_neurons.hooks.capture import PARTS, capture, collect
from transfer_neurons.model.adapters import supported_model_types
from transfer_neurons.model.loading import LoadedModel, attach_store
from transfer_neurons.testing import example_pairs

ROWS = example_pairs(6)
SENTENCES = [r["en"] for r in ROWS] + [r["ja"] for r in ROWS]
LAST = ("h", "mlp", "act", "scale", "final")


def stored(lm: LoadedModel, root, **kwargs) -> LoadedModel:
    """A copy of `lm` (same model object) with an activation store under `root`."""
    return attach_store(dataclasses.replace(lm, store=None), root, **kwargs)


class Forwards:
    """Counts the sentences the decoder is run on (rows of every forward pass)."""

    def __init__(self, lm: LoadedModel) -> None:
        self.rows = 0
        self.handle = lm.model.get_decoder().register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, _module, args, kwargs) -> None:
        self.rows += int(kwargs["input_ids"].shape[0])

    def close(self) -> None:
        self.handle.remove()


def assert_same(direct: dict, read: dict, parts) -> None:
    for part in parts:
        assert torch.equal(direct[part], read[part]), part


@pytest.mark.parametrize("model_type", supported_model_types())
def test_store_reads_equal_direct_capture(tiny, tmp_path, model_type):
    """Every part, every layer, bitwise: the fill's batches are the direct capture's batches."""
    lm = tiny(model_type)
    with_store = stored(lm, tmp_path)
    last = lm.num_layers - 1
    for parts, layers in (
        (LAST[:4], None),
        (("final",), [last]),
        (("pos", "median"), [0, last]),
        (("asum",), [0, last]),
    ):
        direct = collect(lm, SENTENCES, parts, layers, batch_size=4)
        first = collect(with_store, SENTENCES, parts, layers, batch_size=4)  # fills
        again = collect(with_store, SENTENCES[::-1], parts, layers, batch_size=3)  # reads only
        assert_same(direct, first, parts)
        assert_same({p: v.flip(1) for p, v in direct.items()}, again, parts)
    assert set(PARTS) == {*LAST, "pos", "median", "asum"}


def test_each_distinct_sentence_is_forwarded_once(tiny, tmp_path):
    lm = stored(tiny("llama"), tmp_path)
    forwards = Forwards(lm)
    try:
        collect(lm, SENTENCES[:8], ("h",), batch_size=3)
        collect(lm, SENTENCES, ("act", "scale"), [1], batch_size=5)  # 4 new sentences
        collect(lm, SENTENCES + SENTENCES[:2], ("mlp",), batch_size=4)  # nothing new, duplicates
    finally:
        forwards.close()
    assert forwards.rows == len(SENTENCES)


def test_an_intervention_runs_the_model(tiny, tmp_path):
    """Interventional captures never read the store (and never write to it)."""
    from transfer_neurons.hooks.interventions import Intervention

    lm = stored(tiny("llama"), tmp_path)
    off = Intervention.of([(0, 1), (1, 2)])
    direct = collect(tiny("llama"), SENTENCES, ("h",), intervention=off)
    assert torch.equal(collect(lm, SENTENCES, ("h",), intervention=off)["h"], direct["h"])
    assert not (tmp_path / lm.store.key / INDEX).exists()


def test_killed_fill_resumes_and_unnamed_shards_are_ignored(tiny, tmp_path, monkeypatch):
    """A fill killed after its first shard keeps that shard (named in the index) and nothing else;
    the next capture forwards only the rest."""
    lm = stored(tiny("llama"), tmp_path)
    monkeypatch.setattr(store_module, "SHARD_BYTES", 1)  # one row per shard
    writes = {"n": 0}
    original = ActivationStore.write

    def dying(self, group, keys, tensors):
        if writes["n"] == 2:
            raise KeyboardInterrupt
        writes["n"] += 1
        return original(self, group, keys, tensors)

    monkeypatch.setattr(ActivationStore, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        collect(lm, SENTENCES, ("h",), batch_size=1)
    monkeypatch.setattr(ActivationStore, "write", original)
    (lm.store.folder / "last-deadbeef0000.safetensors").write_bytes(b"half a shard")  # killed mid-write
    index = json.loads((lm.store.folder / INDEX).read_text())
    assert len(index["shards"]) == 2

    fresh = stored(tiny("llama"), tmp_path)
    forwards = Forwards(fresh)
    try:
        read = collect(fresh, SENTENCES, ("h",), batch_size=1)
    finally:
        forwards.close()
    assert forwards.rows == len(SENTENCES) - 2
    assert torch.equal(read["h"], collect(tiny("llama"), SENTENCES, ("h",), batch_size=1)["h"])


def test_damaged_shard_is_recomputed(tiny, tmp_path):
    lm = stored(tiny("llama"), tmp_path)
    direct = collect(lm, SENTENCES, ("h", "act"))
    shard = next(lm.store.folder.glob("last-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside a tensor: the header still parses
    shard.write_bytes(bytes(data))
    fresh = stored(tiny("llama"), tmp_path)
    forwards = Forwards(fresh)
    try:
        with pytest.warns(UserWarning, match="damaged"):
            read = collect(fresh, SENTENCES, ("h", "act"))
    finally:
        forwards.close()
    assert forwards.rows == len(SENTENCES)
    assert_same(direct, read, ("h", "act"))


def test_another_model_gets_another_store(tiny, tmp_path):
    """Different weights (one changed value), another tokenizer or another architecture: another key."""
    llama = tiny("llama")
    key = stored(llama, tmp_path).store.key
    assert stored(llama, tmp_path).store.key == key  # stable
    assert stored(tiny("gemma3_text"), tmp_path).store.key != key
    weight = llama.adapter.value_vectors(llama.model, 1)
    with torch.no_grad():
        weight[3, 2] += 1e-3
        try:
            assert stored(llama, tmp_path).store.key != key
        finally:
            weight[3, 2] -= 1e-3
    tokenizer = copy.deepcopy(llama.tokenizer)
    tokenizer.add_tokens(["wereld"])  # a word of the probe text: its ids change too
    assert stored(dataclasses.replace(llama, tokenizer=tokenizer), tmp_path).store.key != key


def test_a_truncating_call_keeps_the_key(tiny, tmp_path):
    llama = tiny("llama")
    tokenizer = copy.deepcopy(llama.tokenizer)
    key = stored(dataclasses.replace(llama, tokenizer=tokenizer), tmp_path).store.key
    tokenizer(SENTENCES, truncation=True, max_length=4, padding=True)
    assert stored(dataclasses.replace(llama, tokenizer=tokenizer), tmp_path).store.key == key


def test_foreign_index_is_refused(tiny, tmp_path):
    lm = stored(tiny("llama"), tmp_path)
    collect(lm, SENTENCES[:2], ("h",))
    index_path = lm.store.folder / INDEX
    index = json.loads(index_path.read_text())
    index["key"] = "0" * 24
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="belongs to model key"):
        stored(tiny("llama"), tmp_path)


def test_store_in_model_dtype_keeps_counts_exact(tiny, tmp_path):
    lm = stored(tiny("llama"), tmp_path, dtype="bfloat16")
    direct = collect(tiny("llama"), SENTENCES, ("h", "scale"))
    read = collect(lm, SENTENCES, ("h", "scale"))
    assert torch.equal(read["scale"], direct["scale"])  # kept in float32
    assert torch.equal(read["h"], direct["h"].bfloat16().float())
    assert lm.store.dtype == torch.bfloat16
    assert lm.store.key == stored(tiny("llama"), tmp_path).store.key + "-bfloat16"  # never mixed with float32


def test_batches_carry_lengths(tiny, tmp_path):
    lm = stored(tiny("llama"), tmp_path)
    direct = {
        int(k): int(n) for b in capture(tiny("llama"), SENTENCES, ()) for k, n in zip(b.index, b.lengths, strict=True)
    }
    list(capture(lm, SENTENCES, ()))
    read = {int(k): int(n) for b in capture(lm, SENTENCES, ()) for k, n in zip(b.index, b.lengths, strict=True)}
    assert read == direct


def test_a_store_keeping_tokens_fills_both_groups_in_one_pass(tiny, tmp_path):
    lm = stored(tiny("gemma3_text"), tmp_path, groups=("last", "tokens"))
    forwards = Forwards(lm)
    try:
        states = collect(lm, SENTENCES, ("h",))
        tokens = collect(lm, SENTENCES, ("pos", "median"))
    finally:
        forwards.close()
    assert forwards.rows == len(SENTENCES)
    assert torch.equal(states["h"], collect(tiny("gemma3_text"), SENTENCES, ("h",))["h"])
    direct = collect(tiny("gemma3_text"), SENTENCES, ("pos", "median"))
    assert_same(direct, tokens, ("pos", "median"))
