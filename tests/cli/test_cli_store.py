"""`--store` on the commands: a second command reads what the first stored, with the same results
as no store; a bad store dtype or an unusable folder is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from helpers import EXAMPLES, assert_error, detect_args, run


def test_commands_share_a_store(model_folder, tmp_path):
    store = tmp_path / "store"
    model = model_folder("llama")
    plain = run(
        *detect_args(model, EXAMPLES, tmp_path / "plain", "--type", "type2", "--max-sentences", "12", "--top-n", "20")
    )
    assert plain.exit_code == 0, plain.output
    for neuron_type in ("type1", "type2"):
        args = detect_args(
            model, EXAMPLES, tmp_path / neuron_type, "--type", neuron_type, "--max-sentences", "12", "--top-n", "20"
        )
        result = run(*args, "--store", store)
        assert result.exit_code == 0, result.output
    (folder,) = [p for p in store.iterdir() if p.is_dir()]
    index = json.loads((folder / "index.json").read_text())
    stored = [key for shard in index["shards"].values() for key in shard["texts"]]
    assert len(stored) == len(set(stored)) == 24  # 12 pairs: en and ja once each, for both types
    same = load_file(tmp_path / "type2" / "scores.safetensors")["scores"]
    assert same.nan_to_num(0).equal(load_file(tmp_path / "plain" / "scores.safetensors")["scores"].nan_to_num(0))
    latent = run(
        "latent", "--model", model, "--data", EXAMPLES, "--max-sentences", "12", "--k", "3",
        "--out", tmp_path / "latent", "--device", "cpu", "--quiet", "--store", store,
    )  # fmt: skip
    assert latent.exit_code == 0, latent.output
    index = json.loads((folder / "index.json").read_text())
    assert sum(len(shard["texts"]) for shard in index["shards"].values()) == 24  # nothing new to forward


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--store-dtype", "int8"], "unknown --store-dtype 'int8'"),
        (["--store", EXAMPLES], "cannot use activation store"),
    ],
)
def test_bad_store(model_folder, tmp_path, extra, message):
    out = tmp_path / "out"
    store = [] if "--store" in extra else ["--store", tmp_path / "store"]
    result = run(*detect_args(model_folder("llama"), EXAMPLES, out), *store, *extra)
    assert_error(result, message, out)
