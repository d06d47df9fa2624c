"""latent / ablate / generate / export-steering end to end on a tiny model, and their bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import EXAMPLES, assert_error, run

COMMON = ["--device", "cpu", "--quiet", "--max-sentences", "24", "--k", "3"]


@pytest.fixture(scope="module")
def detected_type1(model_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    args = [
        "detect",
        "--model",
        model_folder("llama"),
        "--lang",
        "ja",
        "--data",
        EXAMPLES,
        "--out",
        out,
        "--top-n",
        "40",
        "--device",
        "cpu",
        "--quiet",
        "--max-sentences",
        "24",
    ]
    assert run(*args).exit_code == 0
    return out


def test_latent_writes_json_and_figures(model_folder, tmp_path):
    other = tmp_path / "en-xx.jsonl"  # a second "language": the same pairs under another code
    other.write_text(
        "".join(
            json.dumps({"en": row["en"], "xx": row["ja"][::-1]}, ensure_ascii=False) + "\n"
            for row in map(json.loads, EXAMPLES.read_text(encoding="utf-8").splitlines()[:30])
        ),
        encoding="utf-8",
    )
    out = tmp_path / "latent"
    result = run("latent", "--model", model_folder("llama"), "--data", EXAMPLES, "--data", other, "--out", out, *COMMON)
    assert result.exit_code == 0, result.output
    assert "mutual kNN (k = " in result.output and "peaks at layer" in result.output
    data = json.loads((out / "latent.json").read_text())
    assert sorted(data["pairs"]) == ["ja", "xx"] and data["nonparallel"] == {"ja": "shifted", "xx": "shifted"}
    for curves in data["pairs"].values():
        for key in ("mknn", "parallel_sim", "nonparallel_sim", "act_parallel_sim", "act_nonparallel_sim"):
            assert len(curves[key]) == len(curves["ci_low"][key]) == len(curves["ci_high"][key]) == 4
        assert set(curves["peak"]) == {"layer"} and curves["middle_peak"]["n"] == 24
    assert data["centroid_similarity"]["langs"] == ["en", "ja", "xx"]
    for figure in data["figures"]:
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "manifest.json").read_text())["command"] == "latent"


def test_ablate_three_conditions(model_folder, detected_type1, tmp_path):
    out = tmp_path / "ablate"
    result = run(
        "ablate",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected_type1 / "neurons.json",
        "--top-k",
        "20",
        "--data",
        EXAMPLES,
        "--out",
        out,
        "--nonparallel",
        EXAMPLES,
        *COMMON,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "ablation.json").read_text())
    assert list(data["conditions"]) == ["normal", "deactivated", "random"]
    normal, deactivated = data["conditions"]["normal"], data["conditions"]["deactivated"]
    assert normal["mknn"] != deactivated["mknn"] or normal["parallel_sim"] != deactivated["parallel_sim"]
    iv = json.loads((out / "intervention.json").read_text())
    base = json.loads((out / "baseline.json").read_text())
    assert len(iv["neurons"]) == 20 and len(base["draws"]) == 5 and all(len(d) == 20 for d in base["draws"])
    assert not {tuple(n[:2]) for n in iv["neurons"]} & {tuple(n[:2]) for d in base["draws"] for n in d}
    assert data["baseline"]["seeds"] == [0, 1, 2, 3, 4] and data["baseline"]["mode"] == "per-layer"
    assert data["bootstrap"] == 1000 and "p_vs_random" in data["summary"]["deactivated"]["mean_mknn"]
    assert "seeds" in data["summary"]["random"]["mean_mknn"] and "ci_low" in normal
    assert "vs random" in result.output
    for name in ("ablation_mknn.png", "ablation_similarity_gap.png", "ablation_act_similarity.png"):
        assert (out / name).is_file()


def test_generate_with_amplification(model_folder, detected_type1):
    result = run(
        "generate",
        "--model",
        model_folder("llama"),
        "--prompt",
        "I can't",
        "--neurons",
        detected_type1 / "neurons.json",
        "--top-k",
        "10",
        "--factor",
        "4",
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "normal:" in result.output and "top-10 x 4 (all):" in result.output


def test_export_steering(detected_type1, tmp_path):
    result = run(
        "export-steering", "--neurons", detected_type1 / "neurons.json", "--top-k", "15", "--out", tmp_path / "s.pt"
    )
    assert result.exit_code == 0, result.output
    config = torch.load(tmp_path / "s.pt", weights_only=True)
    assert sum(int((v["steering_vector"] == 0).sum()) for v in config.values()) == 15


def test_ablate_top_k_too_large(model_folder, detected_type1, tmp_path):
    out = tmp_path / "out"
    result = run(
        "ablate",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected_type1 / "neurons.json",
        "--top-k",
        "41",
        "--data",
        EXAMPLES,
        "--out",
        out,
        *COMMON,
    )
    assert_error(result, "--top-k 41", out)


def test_ablate_missing_neurons_file(model_folder, tmp_path):
    out = tmp_path / "out"
    result = run(
        "ablate",
        "--model",
        model_folder("llama"),
        "--neurons",
        tmp_path / "nope.json",
        "--data",
        EXAMPLES,
        "--out",
        out,
        *COMMON,
    )
    assert_error(result, "does not exist", out)


def test_latent_too_few_pairs_for_k(model_folder, tmp_path):
    out = tmp_path / "out"
    result = run(
        "latent",
        "--model",
        model_folder("llama"),
        "--data",
        EXAMPLES,
        "--out",
        out,
        "--device",
        "cpu",
        "--max-sentences",
        "5",
        "--k",
        "5",
    )
    assert_error(result, "needs more than 5", out)


def test_latent_langs_count_mismatch(model_folder, tmp_path):
    out = tmp_path / "out"
    result = run("latent", "--model", model_folder("llama"), "--data", EXAMPLES, "--langs", "ja,ko", "--out", out)
    assert_error(result, "--langs names 2 languages for 1 --data files", out)


def test_export_steering_needs_pt(detected_type1, tmp_path):
    result = run("export-steering", "--neurons", detected_type1 / "neurons.json", "--out", tmp_path / "s.json")
    assert result.exit_code == 2 and "must end in .pt" in result.stderr
