"""Every analysis reachable from both a command and a study step writes the same files, the same
JSON keys and the same numbers when given the same inputs and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import write_study
from transfer_neurons.cli import app

runner = CliRunner()
DEV = ["--device", "cpu", "--quiet", "--batch-size", "8"]
VARYING = {"inputs", "timings_s", "versions", "source", "files"}  # paths, clocks, digests (safetensors headers vary)


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def study(model_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    config = write_study(folder, model_folder("llama"))
    run("run", config, "--out", folder / "run", "--quiet")
    return folder / "run"


def stored(study: Path) -> list:
    """The study's activation store: the command reads the very states the step read (a fresh
    capture could batch a sentence with other padding, and float rounding can move a kNN rank)."""
    return ["--store", study / "store"]


def same_json(a: object, b: object, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for key in a:
            if key not in VARYING:
                same_json(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths differ"
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            same_json(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_folder(step: Path, command: Path) -> None:
    files = sorted(p.name for p in command.iterdir())
    assert sorted(p.name for p in step.iterdir() if p.name != "step.json") == files
    for name in files:
        if name.endswith(".json"):
            same_json(json.loads((step / name).read_text()), json.loads((command / name).read_text()), name)
        elif name.endswith(".jsonl"):
            a, b = ([json.loads(line) for line in (f / name).read_text().splitlines()] for f in (step, command))
            same_json(a, b, name)
        elif name.endswith(".safetensors"):
            a, b = load_file(step / name), load_file(command / name)
            assert set(a) == set(b)
            for key in a:
                torch.testing.assert_close(a[key], b[key], equal_nan=True, rtol=1e-5, atol=1e-6)


def test_detect(study, model_folder, tmp_path):
    for lang, neuron_type in (("ja", "type1"), ("ko", "type2")):
        out = tmp_path / f"{lang}-{neuron_type}"
        run(
            "detect",
            "--model",
            model_folder("llama"),
            "--lang",
            lang,
            "--type",
            neuron_type,
            "--top-n",
            "30",
            "--data",
            study / "data" / lang / "train.jsonl",
            "--out",
            out,
            *DEV,
            *stored(study),
        )
        assert_same_folder(study / "detect" / lang / neuron_type, out)


def test_latent_and_ablate(study, model_folder, tmp_path):
    data = study / "data"
    run(
        "latent",
        "--model",
        model_folder("llama"),
        "--data",
        data / "ja" / "test.jsonl",
        "--data",
        data / "ko" / "test.jsonl",
        "--nonparallel",
        data / "ko" / "nonparallel.jsonl",
        "--k",
        "3",
        "--out",
        tmp_path / "latent",
        *DEV,
        *stored(study),
    )
    assert_same_folder(study / "latent", tmp_path / "latent")
    run(
        "ablate",
        "--model",
        model_folder("llama"),
        "--neurons",
        study / "detect" / "ko" / "type1" / "neurons.json",
        "--top-k",
        "8",
        "--data",
        data / "ko" / "test.jsonl",
        "--nonparallel",
        data / "ko" / "nonparallel.jsonl",
        "--k",
        "3",
        "--out",
        tmp_path / "ablate",
        *DEV,
        *stored(study),
    )
    assert_same_folder(study / "ablate" / "ko", tmp_path / "ablate")


def test_specificity_and_overlap(study, model_folder, tmp_path):
    sets = [study / "detect" / lang / neuron_type for lang in ("ja", "ko") for neuron_type in ("type1", "type2")]
    data = [study / "data" / lang / "test.jsonl" for lang in ("ja", "ja", "ko")]
    run(
        "specificity",
        "--model",
        model_folder("llama"),
        *[x for s in sets for x in ("--neurons", s / "neurons.json")],
        *[x for d in data for x in ("--data", d)],
        "--langs",
        "en,ja,ko",
        "--top-n",
        "20",
        "--out",
        tmp_path / "specificity",
        *DEV,
        *stored(study),
    )
    assert_same_folder(study / "specificity", tmp_path / "specificity")
    run("overlap", *sets, "--top-n", "20", "--out", tmp_path / "overlap")
    assert_same_folder(study / "overlap", tmp_path / "overlap")


@pytest.mark.parametrize("task", ["qa", "mc", "output-lang"])
def test_downstream(study, model_folder, tmp_path, task):
    neuron_type = "type2" if task == "output-lang" else "type1"
    extra = {
        "qa": ["--max-questions", "3"],
        "mc": ["--max-questions", "3"],
        "output-lang": [
            "--data",
            study / "data" / "ja" / "test.jsonl",
            "--max-prompts",
            "3",
            "--langid-langs",
            "en,ja,ko",
        ],
    }[task]
    run(
        task,
        "--model",
        model_folder("llama"),
        "--neurons",
        study / "detect" / "ja" / neuron_type / "neurons.json",
        "--top-k",
        "8",
        *extra,
        "--out",
        tmp_path / task,
        *DEV,
    )
    assert_same_folder(study / task.replace("-", "_") / "ja", tmp_path / task)
