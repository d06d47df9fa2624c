"""A rerun into a finished folder leaves exactly the files its manifest lists (the previous result's
files go first, also those a killed save had started); a write that fails on a full disk removes what
it wrote and says in one line how much space it needed, for `--out` and for the activation store."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from helpers import EXAMPLES, assert_error, detect_args, run
from transfer_neurons.analyses.detect import Detection
from transfer_neurons.artifacts import io, names
from transfer_neurons.artifacts.io import read_json

DEV = ["--device", "cpu", "--quiet"]


def listed(out: Path) -> tuple[set[str], set[str]]:
    """The files a folder holds (hidden ones aside), and those its manifest lists (with itself)."""
    held = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return held, {*read_json(out / names.MANIFEST)["files"], names.MANIFEST}


def assert_exactly_listed(out: Path) -> None:
    held, manifest = listed(out)
    assert held == manifest
    assert not any(p.name.startswith(".") for p in out.rglob("*")), "a journal or temporary file was left"


@pytest.mark.parametrize("command", ["qa", "output-lang"])
def test_rerun_without_neurons_drops_the_neuron_sets(model_folder, detected, tmp_path, command):
    out = tmp_path / "out"
    args = [command, "--model", model_folder("llama"), "--lang", "ja", "--max-items", "2", "--bootstrap", "0"]
    args += ["--max-new-tokens", "2", "--out", out, *DEV] + (["--data", EXAMPLES] if command == "output-lang" else [])
    assert run(*args, "--neurons", detected["type2"], "--top-k", "5").exit_code == 0
    assert (out / names.INTERVENTION).is_file() and (out / names.BASELINE).is_file()
    assert run(*args).exit_code == 0
    assert_exactly_listed(out)
    assert not (out / names.INTERVENTION).exists() and not (out / names.BASELINE).exists()


def test_detect_rerun_as_ap_drops_the_centroids(model_folder, tmp_path):
    out = tmp_path / "out"
    assert run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10")).exit_code == 0
    assert (out / names.CENTROIDS).is_file()
    assert run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10", "--method", "ap")).exit_code == 0
    assert_exactly_listed(out)
    assert not (out / names.CENTROIDS).exists()


def test_compare_methods_rerun_with_fewer_methods(model_folder, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[:12]), encoding="utf-8")
    out = tmp_path / "out"
    args = ["compare-methods", "--model", model_folder("llama"), "--lang", "ja", "--train", pairs, "--test", pairs]
    args += ["--top-k", "5", "--k", "3", "--no-qa", "--no-output-lang", "--bootstrap", "0", "--out", out, *DEV]
    assert run(*args, "--methods", "tn,ap").exit_code == 0
    assert (out / "ap" / names.NEURONS).is_file()
    assert run(*args, "--methods", "tn").exit_code == 0
    assert_exactly_listed(out)
    assert not (out / "ap").exists() and (out / "tn" / names.NEURONS).is_file()


def test_a_killed_save_is_cleared_by_the_next(model_folder, tmp_path, monkeypatch):
    """A save killed after writing centroids (no manifest lists them) leaves its journal; the next save,
    of a result without centroids, removes them."""
    out = tmp_path / "out"
    assert run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10")).exit_code == 0
    tn = Detection.load(out)

    def killed(self, path):
        raise KeyboardInterrupt  # stands for SIGKILL: no clean-up runs

    with monkeypatch.context() as patch:
        patch.setattr(type(tn.neuron_set), "save", killed)
        with pytest.raises(KeyboardInterrupt):
            tn.save(out)
    assert (out / names.CENTROIDS).is_file() and not (out / names.MANIFEST).exists()
    assert names.CENTROIDS in io.recorded(out)
    assert run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10", "--method", "ap")).exit_code == 0
    assert_exactly_listed(out)


def test_files_of_others_in_the_folder_stay(model_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for method in ("tn", "ap"):
        assert (
            run(*detect_args(model_folder("llama"), EXAMPLES, out, "--top-n", "10", "--method", method)).exit_code == 0
        )
    assert (out / "notes.txt").read_text() == "mine"


def full_disk_after(monkeypatch, module, name: str, calls: int) -> None:
    """Make `module.name` (a writer taking the data first and the file second) write half of what it
    would and fail with ENOSPC from its `calls`-th call on."""
    original, seen = getattr(module, name), []

    def writer(data, target, *args, **kwargs):
        seen.append(target)
        if len(seen) < calls:
            return original(data, target, *args, **kwargs)
        if hasattr(target, "write"):
            target.write('{"partial": ')
        else:
            Path(target).write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, name, writer)


def test_a_full_disk_for_out(model_folder, detected, tmp_path, monkeypatch):
    full_disk_after(monkeypatch, json, "dump", 2)  # ablation.json is written, intervention.json is not
    out = tmp_path / "out"
    args = ["ablate", "--model", model_folder("llama"), "--neurons", detected["type1"], "--data", EXAMPLES]
    result = run(*args, "--top-k", "5", "--k", "3", "--max-items", "12", "--bootstrap", "0", "--out", out, *DEV)
    assert_error(result, f"error: no space left on device writing into '{out}': it needs more than ", out)
    assert result.stderr.rstrip().endswith(
        "is free there; the partial files were removed; free some space or choose another --out"
    )
    assert not out.exists()


def test_a_full_disk_for_a_rerun_leaves_no_partial_result(model_folder, detected, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["ablate", "--model", model_folder("llama"), "--neurons", detected["type1"], "--data", EXAMPLES]
    args += ["--top-k", "5", "--k", "3", "--max-items", "12", "--bootstrap", "0", "--out", out, *DEV]
    assert run(*args).exit_code == 0
    (out / "notes.txt").write_text("mine")
    full_disk_after(monkeypatch, json, "dump", 3)
    result = run(*args)
    assert result.exit_code == 2 and "no space left on device" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # no file of either run, others' kept


def test_a_full_disk_for_the_store(model_folder, tmp_path, monkeypatch):
    full_disk_after(monkeypatch, io, "save_file", 1)  # the first safetensors file written: a shard
    store, out = tmp_path / "store", tmp_path / "out"
    args = ["latent", "--model", model_folder("llama"), "--data", EXAMPLES, "--max-items", "8", "--k", "3"]
    result = run(*args, "--store", store, "--out", out, *DEV)
    assert_error(result, f"error: no space left on device writing into '{store}': it needs more than ", out)
    assert "no shard was left behind; free some space or choose another --store folder" in result.stderr
    assert not list(store.rglob("*.safetensors")) and not list(store.rglob("*.tmp"))


def test_a_full_disk_for_a_steering_file(detected, tmp_path, monkeypatch):
    import torch

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "steer.pt"
    result = run("export-steering", "--neurons", detected["type1"], "--top-k", "5", "--out", out)
    assert_error(result, f"no space left on device writing into '{tmp_path}': it needs more than ", out)
    assert "nothing was written" in result.stderr and list(tmp_path.iterdir()) == []
