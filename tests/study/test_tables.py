"""load_run: every metric of a study or of standalone result folders as one tidy table."""

from __future__ import annotations

import pytest

import transfer_neurons as tn
from helpers import EXAMPLES, detect_args, run, write_study
from transfer_neurons.errors import InputError


@pytest.fixture(scope="module")
def study(model_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    out = folder / "run"
    result = run("run", write_study(folder, model_folder("llama")), "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_load_run_reads_every_step_of_a_study(study):
    table = tn.load_run(study)
    assert list(table.columns) == [
        "step",
        "analysis",
        "lang",
        "set",
        "condition",
        "metric",
        "layer",
        "value",
        "ci_low",
        "ci_high",
    ]
    steps = set(table["step"])
    assert {"detect/ja/type1", "detect/ko/type2", "latent", "ablate/ja", "specificity", "overlap"} <= steps
    assert {"qa/ja", "mc/ko", "output_lang/ja"} <= steps and not any(s.startswith("data") for s in steps)
    assert set(table["analysis"]) == {"detect", "latent", "ablate", "specificity", "overlap", "qa", "mc", "output-lang"}
    ablation = table[(table["step"] == "ablate/ja") & (table["metric"] == "mknn")]
    assert set(ablation["condition"]) == {"normal", "deactivated", "random"}
    assert ablation["layer"].notna().all() and ablation["layer"].max() == 3
    scalars = table[(table["analysis"] == "qa") & (table["metric"] == "f1")]
    assert scalars["layer"].isna().all() and len(scalars) == 2 * 3  # ja and ko, three conditions
    assert (scalars["ci_low"] <= scalars["value"]).all() and (scalars["value"] <= scalars["ci_high"]).all()
    p = table[(table["analysis"] == "qa") & (table["metric"] == "f1.p_vs_random")]
    assert set(p["condition"]) == {"deactivated"} and p["value"].between(0, 1).all()
    assert not table[(table["metric"] == "f1.sd") & (table["condition"] == "random")].empty
    bands = ablation[ablation["condition"] == "deactivated"]
    assert bands["ci_low"].notna().all() and (bands["ci_low"] <= bands["ci_high"]).all()
    shares = table[(table["step"] == "output_lang/ja") & table["metric"].str.fullmatch(r"share_[^.]+")]
    assert shares.groupby("condition")["value"].sum().round(6).eq(1).all()
    counts = table[(table["step"] == "detect/ja/type1") & (table["metric"] == "top_count")]
    assert counts["value"].sum() == 30 and set(counts["set"]) == {"type1"}
    assert table["value"].dtype == float


def test_detection_of_a_study_step_drives_an_intervention(study):
    detection = tn.Detection.load(study / "detect" / "ja" / "type2")
    off = tn.Intervention.of(detection.top[:10], 0.0, "all")
    assert len(off.neurons) == 10 and {n[2] for n in off.neurons} == {0.0}


def test_load_run_on_standalone_folders(model_folder, tmp_path):
    model = model_folder("llama")
    detected = tmp_path / "detect"
    assert run(*detect_args(model, EXAMPLES, detected, "--top-n", "40")).exit_code == 0
    table = tn.load_run(detected)
    assert set(table["step"]) == {"."} and set(table["analysis"]) == {"detect"}
    assert set(table["metric"]) == {"top_count", "max_score", "mean_top_score"}

    ablated = tmp_path / "ablate"
    args = ["--neurons", detected / "neurons.json", "--top-k", "20", "--data", EXAMPLES, "--max-sentences", "16"]
    result = run("ablate", "--model", model, *args, "--out", ablated, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    table = tn.load_run(ablated)
    assert set(table["condition"]) == {"normal", "deactivated", "random"} and set(table["lang"]) == {"ja"}
    assert {"mknn", "gap", "mean_mknn", "middle_gap"} <= set(table["metric"])

    swept = tmp_path / "sweep"
    args = ["--neurons", detected / "neurons.json", "--data", EXAMPLES, "--factor", "0,2", "--top-k", "5,20"]
    result = run("sweep", "--model", model, *args, "--max-items", "2", "--max-new-tokens", "2", "--out", swept,
                 "--device", "cpu", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    table = tn.load_run(swept)
    assert set(table["condition"]) == {"normal", "x0 top-5", "x2 top-5", "x0 top-20", "x2 top-20"}
    assert table.groupby("condition")["value"].sum().round(6).eq(1).all()


def test_load_run_refuses_a_folder_without_a_result(tmp_path):
    with pytest.raises(InputError, match="no complete result"):
        tn.load_run(tmp_path)
