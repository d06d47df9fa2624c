"""Data-parallel detection: `torchrun --nproc_per_node 2` (gloo, CPU) writes what one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import transfer_neurons
from helpers import EXAMPLES, detect_args, run
from transfer_neurons.hooks import distributed


def test_single_process_helpers_are_identities():
    assert not distributed.is_distributed() and distributed.is_main()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.shard(["a", "b", "c"]) == ["a", "b", "c"]
    t = torch.arange(3.0)
    assert distributed.all_reduce_sum(t) is t


def test_shards_cover_every_item_once(monkeypatch):
    items = list(range(11))
    shards = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: 3)
        shards.append(distributed.shard(items))
    assert sorted(x for s in shards for x in s) == items
    assert [len(s) for s in shards] == [4, 4, 3]


@pytest.mark.distributed
def test_torchrun_two_processes_equal_one(model_folder, tmp_path):
    model = model_folder("gemma3_text")
    # 15 pairs: shards of 8 and 7 sentences, batches of 4, every layer a candidate
    args = ["--max-sentences", "15", "--batch-size", "4", "--layers", "0-3", "--top-n", "40"]
    single = run(*detect_args(model, EXAMPLES, tmp_path / "one", *args))
    assert single.exit_code == 0, single.output

    src = str(Path(transfer_neurons.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cli = ["-m", "transfer_neurons.cli", *map(str, detect_args(model, EXAMPLES, tmp_path / "two", *args))]
    done = subprocess.run(launch + cli, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("top neurons") == 1  # only rank 0 prints (and writes)

    one, two = tmp_path / "one", tmp_path / "two"
    for name, key, atol in [("scores", "scores", 1e-6), ("centroids", "centroids", 1e-5)]:
        a, b = load_file(one / f"{name}.safetensors")[key], load_file(two / f"{name}.safetensors")[key]
        assert torch.allclose(a, b, atol=atol, rtol=1e-5, equal_nan=True), float((a - b).abs().nan_to_num().max())
    top_one = json.loads((one / "neurons.json").read_text())["top"]
    top_two = json.loads((two / "neurons.json").read_text())["top"]
    assert {(l, i) for l, i, _ in top_one} == {(l, i) for l, i, _ in top_two}
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["settings"]["world_size"] == 2 and manifest["settings"]["n_sentences"] == 15
