"""specificity and overlap end to end on a tiny model, and their bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import EXAMPLES, assert_error, run

DEV = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def en_ja_xx(tmp_path_factory):
    """A third 'language' for specificity: reversed Japanese under the code xx."""
    path = tmp_path_factory.mktemp("data") / "xx.jsonl"
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:20]]
    path.write_text("".join(json.dumps({"xx": r["ja"][::-1]}, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def spec_args(model, detected, xx, out, *extra):
    return [
        "specificity",
        "--model",
        model,
        "--neurons",
        detected["type1"] / "neurons.json",
        "--neurons",
        detected["type2"] / "neurons.json",
        "--data",
        EXAMPLES,
        "--data",
        EXAMPLES,
        "--data",
        xx,
        "--langs",
        "ja,en,xx",
        "--families",
        "xx=Other",
        "--top-n",
        "20",
        "--max-sentences",
        "20",
        "--out",
        out,
        *DEV,
        *extra,
    ]


def test_specificity(model_folder, detected, en_ja_xx, tmp_path):
    out = tmp_path / "spec"
    result = run(
        *spec_args(model_folder("llama"), detected, en_ja_xx, out, "--bootstrap", "200", "--baseline-seeds", "2")
    )
    assert result.exit_code == 0, result.output
    assert "ja-type1 (target): eta^2 > 0.1 for " in result.output and "ja-type2 (family)" in result.output
    assert "ja-type1 (language): eta^2 > 0.1 for " in result.output and "ja-type2 (language)" in result.output
    assert " of 20 neurons vs random " in result.output
    data = json.loads((out / "specificity.json").read_text())
    assert data["schema_version"] == 1 and data["alpha"] == 0.05
    assert data["baseline"] == {"mode": "per-layer", "seed": 0, "seeds": [0, 1]} and data["bootstrap"] == 200
    assert data["langs"] == ["ja", "en", "xx"] and data["families"] == {
        "ja": "Japonic",
        "en": "Germanic",
        "xx": "Other",
    }
    assert data["n_sentences"] == {"ja": 20, "en": 20, "xx": 20}
    one = data["sets"]["ja-type2"]
    assert one["lang"] == "ja" and one["type"] == "type2" and one["top_n"] == 20
    assert set(one) >= {"target", "family", "language"} and one["target"]["top"]["n"] == 20
    share = one["target"]["top"]["share_eta2_gt_0.1"]
    assert len(share["ci"]) == 2 and share["effect_vs_random"]["ci"] is not None and 0 < share["p_vs_random"] <= 1
    assert (
        one["target"]["random"]["mean_eta2"]["seeds"] == [0, 1]
        and len(one["target"]["random"]["mean_eta2"]["per_seed"]) == 2
    )
    tensors = load_file(out / "specificity.safetensors")
    assert tensors["eta2_target_ja"].shape == (4, 64) and tensors["p_target_ja"].dtype == torch.float64
    assert tensors["count"].tolist() == [20.0, 20.0, 20.0] and tensors["sum"].shape == (3, 4, 64)
    top = json.loads((detected["type2"] / "neurons.json").read_text())["top"][:20]
    expected = float(torch.stack([tensors["eta2_target_ja"][l, i] for l, i, _ in top]).double().mean())
    assert one["target"]["top"]["mean_eta2"]["value"] == pytest.approx(expected, rel=1e-12)
    assert tensors["top_neurons/ja-type2"].tolist() == [[l, i] for l, i, _ in top]  # rank order
    assert tensors["random_neurons/ja-type2"].shape == (2, 20, 2)
    assert (out / "specificity.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "specificity" and manifest["seed"] == 0
    assert manifest["settings"]["bootstrap"] == 200 and manifest["settings"]["baseline_seeds"] == 2
    assert set(manifest["files"]) == {"specificity.json", "specificity.safetensors", "specificity.png"}
    assert set(manifest["inputs"]) == {"model", "data_ja", "data_en", "data_xx", "neurons_ja-type1", "neurons_ja-type2"}


@pytest.mark.parametrize(
    ("extra_langs", "message"),
    [
        ("ko,en,xx", "is for 'ja', which no --data file covers"),
        ("ja,ja,xx", "each language may have one --data file"),
        ("ja,en", "--langs names 2 languages for 3 --data files"),
    ],
)
def test_specificity_language_errors(model_folder, detected, en_ja_xx, tmp_path, extra_langs, message):
    args = spec_args(model_folder("llama"), detected, en_ja_xx, tmp_path / "out")
    args[args.index("--langs") + 1] = extra_langs
    assert_error(run(*args), message, tmp_path / "out")


def test_specificity_other_errors(model_folder, detected, en_ja_xx, tmp_path):
    out = tmp_path / "out"
    args = spec_args(model_folder("llama"), detected, en_ja_xx, out)
    no_family = args[: args.index("--families")] + args[args.index("--families") + 2 :]
    assert_error(run(*no_family), "no built-in language family for xx", out)
    too_many = [*args]
    too_many[too_many.index("--top-n") + 1] = "41"
    assert_error(run(*too_many), "--top-n 41 exceeds the 40 neurons", out)
    one_lang = [
        "specificity",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type1"] / "neurons.json",
        "--data",
        EXAMPLES,
        "--out",
        out,
        *DEV,
    ]
    assert_error(run(*one_lang), "at least two languages", out)


def test_overlap(detected, tmp_path):
    out = tmp_path / "overlap"
    result = run(
        "overlap",
        detected["type1"],
        detected["type2"] / "neurons.json",
        detected["type1"],
        "--out",
        out,
        "--top-n",
        "30",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "overlap.json").read_text())
    assert data["labels"] == [str(detected["type1"]), str(detected["type2"]), str(detected["type1"])]  # duplicates
    assert data["jaccard"][0][2] == 1.0 and data["jaccard"][0][1] == data["jaccard"][1][0]
    assert sum(data["layer_counts"][str(detected["type2"])]) == 30 and len(data["chance_jaccard"]) == 3
    assert (out / "overlap.png").is_file() and (out / "layers.png").is_file()
    assert data["schema_version"] == 1 and data["top_n"] == 30
    assert data["chance_jaccard"][0][0] == data["chance_jaccard"][2][2] == data["chance_jaccard"][0][2]
    layers = [
        json.loads((detected[neuron_type] / "neurons.json").read_text())["layers"] for neuron_type in ("type1", "type2")
    ]
    assert layers == [[0, 1, 2], [3]] and data["chance_jaccard"][0][1] == data["chance_jaccard"][1][0] == 0.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "overlap" and manifest["settings"] == {"top_n": 30}
    assert set(manifest["files"]) == {"overlap.json", "overlap.png", "layers.png"}


def test_overlap_default_top_n_and_labels(detected, tmp_path):
    out = tmp_path / "overlap"
    result = run("overlap", detected["type1"], detected["type2"], "--out", out)
    assert result.exit_code == 0, result.output
    assert "ja type1 vs ja type2: Jaccard" in result.output
    data = json.loads((out / "overlap.json").read_text())
    assert data["labels"] == ["ja type1", "ja type2"] and data["top_n"] == 40 and data["jaccard"][0][0] == 1.0


def test_overlap_errors(detected, tmp_path):
    out = tmp_path / "out"
    assert_error(run("overlap", detected["type1"], "--out", out), "at least two neuron sets", out)
    assert_error(run("overlap", detected["type1"], tmp_path / "nope", "--out", out), "does not exist", out)
    assert_error(run("overlap", detected["type1"], detected["type2"], "--out", out, "--top-n", "41"), "--top-n 41", out)
    other = tmp_path / "other.json"
    info = json.loads((detected["type2"] / "neurons.json").read_text())
    other.write_text(json.dumps({**info, "model_identity": {**info["model_identity"], "key": "0" * 24}}))
    assert_error(run("overlap", detected["type1"], other, "--out", out), "different models", out)
    renamed = tmp_path / "renamed.json"  # a name is not an identity: the same model under another name
    renamed.write_text(json.dumps({**info, "model": "another-name"}))
    assert run("overlap", detected["type1"], renamed, "--out", out).exit_code == 0
