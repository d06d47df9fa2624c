"""Neuron sets know their model: `detect` records the model's identity (the activation store's key of
its config, weights and tokenizer) and every command that reads a set compares identities, not
paths. The same model is accepted at any path, as a built-in name or as its GGUF source; a set of
another model of the same shape is refused (tests/cli/test_probe.py, for every command); a set of
an older version (no identity) is checked by its shape with a warning."""

from __future__ import annotations

import json
import shutil

import torch

from helpers import EXAMPLES, assert_error, run
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import file_digest, read_json
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.model import loading
from transfer_neurons.model.builtin import BUILTIN_MODELS, BuiltinModel
from transfer_neurons.model.delta import Delta, Slice
from transfer_neurons.model.identity import model_key
from transfer_neurons.model.loading import load_model

DEV = ["--device", "cpu", "--quiet"]


def ablate(model, neurons, out, *extra):
    args = ["ablate", "--model", model, "--neurons", neurons, "--data", EXAMPLES, "--max-items", "12"]
    return run(
        *args, "--top-k", "5", "--k", "3", "--bootstrap", "0", "--baseline-seeds", "1", "--out", out, *DEV, *extra
    )


def test_a_set_records_the_store_key_of_its_model(model_folder, detected, tmp_path):
    """The identity is the key the activation store files the model's states under."""
    model = str(model_folder("llama"))
    lm = load_model(model, device="cpu")
    key, meta = model_key(lm.model, lm.tokenizer)
    identity = read_json(detected["type1"] / names.NEURONS)["model_identity"]
    assert identity["key"] == key and identity["dtype"] == meta["dtype"] == "float32"
    assert read_neurons(detected["type1"]).identity == lm.identity()
    store = tmp_path / "store"
    result = run("latent", "--model", model, "--data", EXAMPLES, "--max-items", "8", "--k", "3", "--bootstrap", "0",
                 "--store", store, "--out", tmp_path / "latent", *DEV)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [p.name for p in store.iterdir()] == [key]
    assert load_model(model, device="cpu", store=store).identity() == lm.identity()  # taken from the store's key
    out = tmp_path / "ablate"
    assert ablate(model, detected["type1"], out).exit_code == 0
    for file in (names.INTERVENTION, names.BASELINE):  # the sets an experiment ran record the model too
        assert read_json(out / file)["model_identity"] == identity


def test_the_same_model_at_another_path_as_a_builtin_name_or_its_gguf(model_folder, detected, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(model_folder("llama"), copy)
    result = ablate(str(copy), detected["type1"], tmp_path / "by-path")
    assert result.exit_code == 0 and not result.stderr, result.output
    monkeypatch.setitem(BUILTIN_MODELS, "tiny-llama", BuiltinModel("tiny-llama", "tiny-dist", "the tiny Llama"))
    monkeypatch.setattr(loading, "pull", lambda name, progress=True: copy)
    result = ablate("tiny-llama", detected["type1"], tmp_path / "by-name")
    assert result.exit_code == 0 and not result.stderr, result.output
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(loading, "convert_gguf", lambda path, progress=True: copy)
    result = ablate(str(gguf), detected["type1"], tmp_path / "by-gguf")
    assert result.exit_code == 0 and not result.stderr, result.output


def test_finetune_takes_the_same_model_copied_elsewhere(model_folder, detected, tmp_path):
    """finetune used to compare the paths: the same model in another folder was refused."""
    copy = tmp_path / "copy"
    shutil.copytree(model_folder("llama"), copy)
    args = ["finetune", "--model", copy, "--neurons", detected["type1"], "--train", EXAMPLES, "--eval", EXAMPLES]
    result = run(*args, "--top-k", "4", "--steps", "1", "--k", "3", "--bootstrap", "0", "--out", tmp_path / "ft", *DEV)
    assert result.exit_code == 0, result.output


def _without_identity(folder, target):
    """A copy of a detect folder as an older version wrote it: no model identity."""
    shutil.copytree(folder, target)
    info = read_json(target / names.NEURONS)
    del info["model_identity"]
    (target / names.NEURONS).write_text(json.dumps(info), encoding="utf-8")
    manifest = read_json(target / names.MANIFEST)
    manifest["files"][names.NEURONS] = file_digest(target / names.NEURONS)
    (target / names.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return target


def test_an_older_set_is_checked_by_its_shape_with_a_warning(model_folder, detected, tmp_path):
    old = _without_identity(detected["type1"], tmp_path / "old")
    result = ablate(str(model_folder("llama", seed=1)), old, tmp_path / "out")  # another model: cannot be told
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: neuron set '{old / names.NEURONS}' records no model identity (it names "
        f"'{model_folder('llama')}'): only its shape is checked against '{model_folder('llama', seed=1)}'; "
        "rerun detect to record it"
    ]
    wide = model_folder("llama", num_hidden_layers=2)
    assert_error(ablate(str(wide), old, tmp_path / "o2"), "lies outside the model's 2 layers", tmp_path / "o2")


def test_another_dtype_compares_architecture_and_tokenizer(model_folder, detected, tmp_path):
    result = ablate(str(model_folder("llama")), detected["type1"], tmp_path / "out", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: neuron set '{detected['type1'] / names.NEURONS}' was detected in float32 and "
        f"'{model_folder('llama')}' is loaded in bfloat16: only their architecture and tokenizer could be "
        "compared, not their weights"
    ]
    other = str(model_folder("llama", intermediate_size=48))  # another architecture in another dtype
    result = ablate(other, detected["type1"], tmp_path / "o2", "--dtype", "bfloat16")
    assert_error(result, "belongs to model", tmp_path / "o2")


def test_a_delta_keeps_the_identity_of_its_base_model(model_folder, tmp_path):
    """A fine-tuning delta changes weights, not which model the neurons belong to."""
    model = str(model_folder("llama"))
    base = load_model(model, device="cpu")
    identity = base.identity()
    down = base.adapter.down_module(base.model, 0)
    name = next(n for n, m in base.model.named_modules() if m is down) + ".weight"
    slices = {name: Slice(1, torch.tensor([1]), torch.zeros(down.weight.shape[0], 1))}
    Delta(identity.key, model, "neurons", [(0, 1)], slices=slices).save(tmp_path / names.DELTA)
    tuned = load_model(model, device="cpu", delta=tmp_path / names.DELTA)
    assert model_key(tuned.model, tuned.tokenizer)[0] != identity.key  # other weights ...
    assert tuned.identity() == identity  # ... of the same model
