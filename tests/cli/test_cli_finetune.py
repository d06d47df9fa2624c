"""`finetune` on the command line: its files, `--delta` on another command (recorded in its manifest),
bad input (one line, exit 2, nothing written), and a run killed after a checkpoint that `--resume`
finishes exactly as an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import EXAMPLES, assert_error, run
from transfer_neurons.analyses import finetune as finetune_analysis
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import file_digest, read_json
from transfer_neurons.model.delta import Delta

DEV = ["--device", "cpu", "--quiet"]
TOP = [[0, 3, 0.9], [1, 7, 0.8], [2, 7, 0.7], [3, 1, 0.6]]


class Killed(Exception):
    """Stands for the process dying after a checkpoint."""


@pytest.fixture
def files(tmp_path, model_folder):
    """The tiny Llama, a neuron set of it, training text and held-out pairs."""
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:50]]
    train, held_out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:30]), encoding="utf-8")
    held_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[30:]), encoding="utf-8")
    model = str(model_folder("llama"))
    neurons = tmp_path / "neurons.json"
    neurons.write_text(json.dumps({"lang": "ja", "model": model, "layers": [0, 1, 2, 3], "top": TOP}), encoding="utf-8")
    return {"model": model, "neurons": neurons, "train": train, "eval": held_out}


def finetune(files, out, *extra):
    args = ["--model", files["model"], "--neurons", files["neurons"], "--train", files["train"]]
    args += ["--eval", files["eval"], "--top-k", "4", "--steps", "6", "--lr", "0.05", "--batch-size", "4"]
    return run("finetune", *args, "--k", "3", "--bootstrap", "20", "--out", out, *DEV, *extra)


def test_finetune_writes_its_files_and_the_delta_applies_to_another_command(files, tmp_path):
    out = tmp_path / "ft"
    result = finetune(files, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [names.FINETUNE, names.LOSS_FIGURE, names.DELTA, names.MANIFEST]
    )  # no checkpoint left behind
    data = read_json(out / names.FINETUNE)
    assert len(data["loss"]) == 6 and data["neurons"] == [[l, i] for l, i, _ in sorted(TOP)]
    assert data["parameters"]["trainable"] == data["parameters"]["target"] == 4 * 3 * 32
    for metric in ("l2_perplexity", "en_perplexity", "mean_mknn", "mean_gap", "middle_gap"):
        assert data["measures"]["before"][metric]["ci"] is not None and "p" in data["measures"]["change"][metric]
    assert "l2_perplexity" in result.output
    latent = tmp_path / "latent"
    result = run(
        "latent", "--model", files["model"], "--data", files["eval"], "--k", "3", "--bootstrap", "0",
        "--delta", out, "--out", latent, *DEV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = read_json(latent / names.MANIFEST)["inputs"]["delta"]
    assert recorded == {"path": str(out / names.DELTA), "sha256": file_digest(out / names.DELTA)}


def _neurons(files, tmp_path, **changes):
    path = tmp_path / "bad-neurons.json"
    path.write_text(json.dumps({**json.loads(files["neurons"].read_text()), **changes}), encoding="utf-8")
    return {**files, "neurons": path}


def test_neurons_of_another_model(files, tmp_path):
    out = tmp_path / "ft"
    other = {"key": "0" * 24, "dtype": "float32", "architecture": "1" * 24}
    bad = _neurons(files, tmp_path, model="org/another-model", model_identity=other)
    assert_error(finetune(bad, out), f"belongs to model 'org/another-model' (identity {'0' * 24}), not to", out)


def test_neurons_outside_the_model(files, tmp_path):
    out = tmp_path / "ft"
    bad = _neurons(files, tmp_path, top=[[1, 999, 0.5], *TOP])
    assert_error(finetune(bad, out), "lies outside the model's 4 layers", out)


def test_top_k_beyond_the_set(files, tmp_path):
    out = tmp_path / "ft"
    assert_error(finetune(files, out, "--top-k", "9"), "--top-k 9 must be between 1 and the 4 neurons", out)


def test_training_text_without_sentences(files, tmp_path):
    out, empty = tmp_path / "ft", tmp_path / "train.txt"
    empty.write_text("\n  \n\n", encoding="utf-8")
    assert_error(finetune({**files, "train": empty}, out), "holds no 'ja' sentences", out)


def test_resume_without_a_checkpoint(files, tmp_path):
    out = tmp_path / "ft"
    assert_error(finetune(files, out, "--resume"), "no checkpoint", out)


def test_a_delta_of_another_model(files, tmp_path):
    path = tmp_path / "other" / names.DELTA
    path.parent.mkdir()
    Delta("0" * 24, "another-model", "neurons", [(0, 1)]).save(path)
    out = tmp_path / "latent"
    result = run(
        "latent", "--model", files["model"], "--data", files["eval"], "--k", "3", "--delta", path, "--out", out, *DEV
    )
    assert_error(result, "was trained on another model", out)


def test_a_killed_run_resumes_to_the_same_slices(files, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert finetune(files, whole, "--save-every", "2").exit_code == 0
    original = finetune_analysis.train

    def dying(*args):
        def on_step(step, _loss):
            if step == 4:  # the 5th step is done, the checkpoint holds 4
                raise Killed

        return original(*args[:7], on_step, args[8])

    monkeypatch.setattr(finetune_analysis, "train", dying)
    out = tmp_path / "killed"
    result = finetune(files, out, "--save-every", "2")
    assert isinstance(result.exception, Killed)
    assert sorted(p.name for p in out.iterdir()) == [names.CHECKPOINT]  # no delta, no manifest
    steps: list[int] = []

    def recording(*args):
        return original(*args[:7], lambda step, _loss: steps.append(step), args[8])

    monkeypatch.setattr(finetune_analysis, "train", recording)
    result = finetune(files, out, "--save-every", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert steps == [4, 5]  # continued from the checkpoint, not from the start
    resumed, expected = Delta.read(out), Delta.read(whole)
    assert resumed.slices.keys() == expected.slices.keys()
    for name, s in expected.slices.items():
        assert torch.equal(resumed.slices[name].values, s.values), name
    assert read_json(out / names.FINETUNE)["loss"] == read_json(whole / names.FINETUNE)["loss"]
    assert not (out / names.CHECKPOINT).exists()
