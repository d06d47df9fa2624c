"""`neurons` and `neuron` end to end on a tiny model with detect folders, and their bad inputs."""

from __future__ import annotations

import json

from helpers import EXAMPLES, assert_error, detect_args, run
from transfer_neurons.analyses.neuron_pages import NeuronPages
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import file_digest
from transfer_neurons.artifacts.neurons import read_neurons

DEV = ["--device", "cpu", "--quiet"]


def pages_args(model, sets, out, *extra):
    return [
        "neurons",
        "--model",
        model,
        *[arg for folder in sets for arg in ("--neurons", folder)],
        "--data",
        EXAMPLES,
        "--top-n",
        "3",
        "--max-items",
        "8",
        "--bootstrap",
        "20",
        "--out",
        out,
        *DEV,
        *extra,
    ]


def test_neurons_writes_an_index_and_a_page_per_neuron(model_folder, detected, tmp_path):
    out = tmp_path / "pages"
    result = run(*pages_args(model_folder("llama"), [detected["type1"], detected["type2"]], out))
    assert result.exit_code == 0, result.output
    sets = [read_neurons(detected[neuron_type]) for neuron_type in ("type1", "type2")]
    expected = list(dict.fromkeys(n for s in sets for n in s.neurons(3)))
    rows = [json.loads(line) for line in (out / names.NEURON_ROWS).read_text(encoding="utf-8").splitlines()]
    assert [(r["layer"], r["neuron"]) for r in rows] == expected
    assert all(r["activation"]["ja"]["n"] == 8 and r["activation"]["en"]["n"] == 8 for r in rows)
    assert all((out / names.neuron_card(layer, neuron)).is_file() for layer, neuron in expected)
    index = (out / names.NEURON_INDEX).read_text(encoding="utf-8")
    assert all(f'href="{names.neuron_card(layer, neuron)}"' in index for layer, neuron in expected)
    pages = NeuronPages.load(out)
    assert pages.cards == rows and set(pages.sets) == {"ja-type1", "ja-type2"}
    assert f"{len(expected)} neuron pages for ja-type1, ja-type2 (ja 8, en 8)" in result.output
    assert "ja-type1 #1: layer " in result.output and f"{len(expected)} pages in {out}/n/" in result.output


def test_neuron_prints_the_card(model_folder, detected):
    layer, neuron, _ = read_neurons(detected["type1"]).top[0]
    result = run(
        "neuron",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type1"],
        f"{layer}:{neuron}",
        "--data",
        EXAMPLES,
        "--max-items",
        "6",
        "--bootstrap",
        "0",
        *DEV,
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"layer {layer}, neuron {neuron} (value vector norm ")
    assert lines[1].startswith("  ja-type1 (tn): rank 1, score ")
    assert lines[2].startswith("promoted: ") and lines[3].startswith("suppressed: ")
    assert "ja, fires most:" in lines and "en, fires least:" in lines
    assert any(line.split()[:2] == ["ja", "6"] for line in lines)  # the activation table
    bare = run("neuron", "--model", model_folder("llama"), "--neurons", detected["type1"], "0:1", *DEV)
    assert bare.exit_code == 0, bare.output
    assert "promoted: " in bare.output and "fires most" not in bare.output


def test_malformed_neuron(model_folder, detected, tmp_path):
    result = run("neuron", "--model", model_folder("llama"), "--neurons", detected["type1"], "3-14", *DEV)
    assert_error(result, "'3-14' is not a neuron; write LAYER:NEURON", tmp_path / "none")


def test_neuron_outside_the_model(model_folder, detected, tmp_path):
    path = tmp_path / "big" / names.NEURONS
    path.parent.mkdir()
    path.write_text(json.dumps({"lang": "ja", "type": "type1", "top": [[1, 5000, 0.5]]}), encoding="utf-8")
    out = tmp_path / "out"
    result = run(*pages_args(model_folder("llama"), [path], out, "--top-n", "1"))
    assert_error(result, "neuron (1, 5000) of", out)
    result = run("neuron", "--model", model_folder("llama"), "--neurons", detected["type1"], "1:5000", *DEV)
    assert_error(result, "neuron 1:5000 lies outside the model's 4 layers x 64 neurons", out)


def test_neurons_of_another_model(model_folder, tmp_path):
    """A detect folder of a model with another hidden size (same layers and MLP width): refused by its
    identity; without one (a file of an older version), its centroids still do not fit."""
    other = tmp_path / "other"
    made = run(*detect_args(model_folder("llama", hidden_size=48), EXAMPLES, other, "--top-n", "10"))
    assert made.exit_code == 0, made.output
    out = tmp_path / "out"
    result = run(*pages_args(model_folder("llama"), [other], out))
    assert_error(result, f"belongs to model '{model_folder('llama', hidden_size=48)}' (identity ", out)
    info = json.loads((other / names.NEURONS).read_text(encoding="utf-8"))
    (other / names.NEURONS).write_text(json.dumps({**info, "model_identity": None}), encoding="utf-8")
    manifest = json.loads((other / names.MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][names.NEURONS] = file_digest(other / names.NEURONS)
    (other / names.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    result = run(*pages_args(model_folder("llama"), [other], out))
    assert result.exit_code == 2 and "was it made for another model?" in result.stderr.splitlines()[-1]
