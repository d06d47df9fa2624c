"""Paths and models: a local-looking path that does not exist, a hub that cannot be reached, a
truncated weights file each give one `error:` line at once (exit 2, nothing written); one model
named by two spellings of its path is one model."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from helpers import EXAMPLES, assert_error, detect_args, run
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.model.loading import looks_local


@pytest.fixture
def offline_hub(monkeypatch):
    """A hub endpoint that refuses connections (without offline mode): what no network looks like."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    "name", ["m/trunc", "./nope", "../nope", "nope.gguf", "~/no-such-folder/x", "nope.safetensors"]
)
def test_missing_local_model_path(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    out = tmp_path / "out"
    assert_error(run(*detect_args(name, EXAMPLES, out)), f"model '{name}' not found: no such folder or file", out)


def test_looks_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    assert looks_local("m/trunc") and looks_local("/abs") and looks_local("x.gguf") and looks_local("~/x")
    assert not looks_local("someorg/some-model") and not looks_local("Qwen/Qwen2.5-0.5B")


def test_unreachable_hub_fails_at_once(tmp_path, offline_hub):
    out = tmp_path / "out"
    start = time.perf_counter()
    result = run(*detect_args("someorg/no-such-model", EXAMPLES, out))
    assert_error(
        result,
        "could not load model 'someorg/no-such-model': the Hugging Face hub cannot be reached "
        "(no answer from http://127.0.0.1:9) and the model is not in the local cache",
        out,
    )
    assert time.perf_counter() - start < 15  # the hub client's retries alone take over 20 s


@pytest.mark.parametrize(
    "command, message",
    [("qa", "QA file 'in/nope.jsonl' does not exist"), ("mc", "multiple-choice file 'in/nope.jsonl' does not exist")],
)
def test_missing_relative_data_file(model_folder, tmp_path, monkeypatch, command, message):
    """`in/nope.jsonl` is a missing file, not a hub dataset id (no hub access, no retries)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = [command, "--model", model_folder("llama"), "--lang", "ja", "--data", "in/nope.jsonl", "--out", out]
    assert_error(run(*args, "--device", "cpu", "--quiet"), message, out)


def test_unreachable_hub_dataset_fails_at_once(model_folder, tmp_path, offline_hub):
    pytest.importorskip("datasets")
    out = tmp_path / "out"
    start = time.perf_counter()
    args = ["qa", "--model", model_folder("llama"), "--lang", "ja", "--data", "someorg/no-such-set", "--out", out]
    result = run(*args, "--device", "cpu", "--quiet")
    assert_error(result, "could not load hub dataset 'someorg/no-such-set' (default, train): ", out)
    assert "the hub cannot be reached (no answer from http://127.0.0.1:9)" in result.stderr
    assert time.perf_counter() - start < 15


def test_missing_local_dataset_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "en-ja.jsonl"
    result = run("data", "tatoeba", "--lang", "ja", "--out", out, "--dataset", "./mirror")
    assert_error(result, "dataset folder './mirror' does not exist", tmp_path / "nothing")
    assert not out.exists()


def test_truncated_safetensors(model_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_folder("llama"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    out = tmp_path / "out"
    assert_error(run(*detect_args(folder, EXAMPLES, out)), f"model file '{weights}' is truncated or damaged", out)


@pytest.mark.parametrize("size", [4, 10, 30])
def test_truncated_gguf(tmp_path, monkeypatch, size):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    header = b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes((header + b"\x05" * 64)[:size])
    out = tmp_path / "out"
    assert_error(run(*detect_args(gguf, EXAMPLES, out)), f"GGUF file '{gguf}'", out)


def test_one_model_by_two_spellings(tmp_path, monkeypatch):
    """A relative and an absolute path to one model folder name one model in overlap."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    top = tuple((0, k, 1.0 - k / 10) for k in range(5))
    NeuronSet(top, "ja", "type1", "m", (0,)).save(tmp_path / "a.json")
    NeuronSet(top, "ko", "type1", str(tmp_path / "m"), (0,)).save(tmp_path / "b.json")
    result = run("overlap", tmp_path / "a.json", tmp_path / "b.json", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "overlap.json").read_text())["model"] == "m"
    NeuronSet(top, "ko", "type1", str(tmp_path / "other"), (0,)).save(tmp_path / "c.json")
    out = tmp_path / "out2"
    assert_error(run("overlap", tmp_path / "a.json", tmp_path / "c.json", "--out", out), "different models", out)
