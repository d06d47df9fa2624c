"""The detect command end to end on a tiny model, and each bad input's one-line error (exit 2)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import MambaConfig

from helpers import EXAMPLES, assert_error, detect_args, run


def test_detect_writes_its_files(model_folder, tmp_path):
    out = tmp_path / "run"
    result = run(
        *detect_args(model_folder("qwen2"), EXAMPLES, out, "--type", "type2", "--top-n", "20", "--batch-size", "5")
    )
    assert result.exit_code == 0, result.output
    assert "top neurons" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "centroids.safetensors",
        "layers.png",
        "manifest.json",
        "neurons.json",
        "scores.safetensors",
    ]
    scores = load_file(out / "scores.safetensors")["scores"]
    centroids = load_file(out / "centroids.safetensors")["centroids"]
    assert scores.shape == (4, 64) and scores.dtype == torch.float32
    assert centroids.shape == (4, 32) and centroids.dtype == torch.float32
    neurons = json.loads((out / "neurons.json").read_text())
    assert neurons["type"] == "type2" and neurons["lang"] == "ja" and neurons["layers"] == [3]
    assert len(neurons["top"]) == 20
    layer, neuron, score = neurons["top"][0]
    assert scores[layer, neuron].item() == pytest.approx(score)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["batch_size"] == 5 and manifest["settings"]["n_sentences"] == 12
    assert len(manifest["inputs"]["data"]["sha256"]) == 64 and "torch" in manifest["versions"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_detect_reads_tsv(model_folder, tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("en\tja\nI am here.\t私はここにいる。\nIt is cold.\t寒い。\n", encoding="utf-8")
    result = run(*detect_args(model_folder("llama"), data, tmp_path / "out", "--top-n", "3"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["settings"]["n_sentences"] == 2


def test_detect_with_device_map_auto(model_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = run(*detect_args(model_folder("gpt2"), EXAMPLES, out, "--device-map", "auto", "--top-n", "5"))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["settings"]["device_map"] is not None


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


BAD_DATA = {
    "missing file": (None, "does not exist"),
    "empty file": ("", "holds no sentence pairs"),
    "not JSON": ('{"en": "a", "ja": "b"}\nnot json\n', "line 2 is not valid JSON"),
    "no L2 field": ('{"en": "a", "ko": "b"}\n', "no 'ja' field"),
    "no en field": ('{"english": "a", "ja": "b"}\n', "no 'en' field"),
    "empty sentence": ('{"en": "a", "ja": "  "}\n', "empty or non-text 'ja' sentence"),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data(model_folder, tmp_path, case):
    text, message = BAD_DATA[case]
    data = tmp_path / "pairs.jsonl"
    if text is not None:
        _write(data, text)
    assert_error(run(*detect_args(model_folder("llama"), data, tmp_path / "out")), message, tmp_path / "out")


def test_unknown_model_path(tmp_path):
    result = run(*detect_args(tmp_path / "no-such-model", EXAMPLES, tmp_path / "out"))
    assert_error(result, "not found", tmp_path / "out")


def test_unsupported_architecture(tmp_path):
    # a state-space model: no MLP neurons at all, so no adapter can describe it
    MambaConfig(num_hidden_layers=1, hidden_size=8).save_pretrained(tmp_path / "mamba")
    result = run(*detect_args(tmp_path / "mamba", EXAMPLES, tmp_path / "out"))
    assert_error(result, "unsupported architecture 'mamba'; supported: llama, mistral", tmp_path / "out")


@pytest.mark.parametrize("layers", ["0-4", "7", "2-1"])
def test_layers_outside_model(model_folder, tmp_path, layers):
    result = run(*detect_args(model_folder("llama"), EXAMPLES, tmp_path / "out", "--layers", layers))
    assert_error(result, "--layers", tmp_path / "out")


@pytest.mark.parametrize("top_n", ["0", "257"])
def test_top_n_out_of_range(model_folder, tmp_path, top_n):
    # 4 candidate layers x 64 neurons = 256 candidates: 257 is too many, 0 too few
    args = detect_args(model_folder("llama"), EXAMPLES, tmp_path / "out", "--layers", "0-3", "--top-n", top_n)
    assert_error(run(*args), "--top-n", tmp_path / "out")


def test_output_path_is_a_file(model_folder, tmp_path):
    out = _write(tmp_path / "taken", "x")
    result = run(*detect_args(model_folder("llama"), EXAMPLES, out))
    assert result.exit_code == 2 and "is a file" in result.stderr
    assert out.read_text() == "x"


def test_unreachable_hub_id(tmp_path):
    """A hub id that is neither cached nor reachable (offline) gives the one-line error."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = detect_args("someorg/no-such-model", EXAMPLES, tmp_path / "out")
    result = subprocess.run(
        [sys.executable, "-m", "transfer_neurons.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "could not load model 'someorg/no-such-model'" in result.stderr
    assert not (tmp_path / "out").exists()
