"""Several models in one study (`models:`) and their comparison: the config keys, the layout of the
run, models.json against each model's own artifacts, and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import run, write_study
from transfer_neurons.analyses.ablate import AblationResult
from transfer_neurons.analyses.detect import Detection
from transfer_neurons.analyses.latent import LatentResult
from transfer_neurons.analyses.specificity import SpecificityResult
from transfer_neurons.artifacts.result import read_manifest
from transfer_neurons.errors import InputError
from transfer_neurons.study.config import describe, load_config, model_slugs

FAST = {  # the study trimmed to what a comparison reads, with few resamples
    "downstream: {max_questions: 3, top_k: 8}": "downstream: {qa: false, mc: false, output_lang: false}",
    "characterise: {top_n: 20}": "characterise: {top_n: 10, overlap: false, pages: false}\nbootstrap: 40\n"
    "baseline_seeds: 2",
}


def study_of(folder: Path, models: list[Path | str]) -> Path:
    """write_study's tiny study (ja, ko from files), trimmed, on `models` (given as `models:`)."""
    path = write_study(folder, models[0])
    text = path.read_text(encoding="utf-8")
    for old, new in {f"model: {models[0]}": f"models: [{', '.join(map(str, models))}]", **FAST}.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def study(model_folder, tmp_path_factory):
    """One finished study of a 4-layer Llama and a 6-layer Gemma-3: (run folder, model folders, slugs)."""
    folders = [model_folder("llama"), model_folder("gemma3_text", num_hidden_layers=6)]
    base = tmp_path_factory.mktemp("multi")
    out = base / "run"
    result = run("run", study_of(base, folders), "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out, folders, [Path(folder).name for folder in folders]


# ---------------------------------------------------------------- config


def test_models_and_model_are_exclusive_and_models_distinct(model_folder, tmp_path):
    folder = model_folder("llama")
    config = study_of(tmp_path, [folder, "gemma-3-270m"])
    assert load_config(config).model_list() == [str(folder), "gemma-3-270m"]
    text, other = config.read_text(), f"{folder}/../{Path(folder).name}"
    for edited, message in (
        (text.replace("models:", f"model: {folder}\nmodels:"), "config: give either `model` or `models`, not both"),
        (re.sub(r"models: .*\n", "", text), "config: `model` or `models` is required"),
        (text.replace("gemma-3-270m", str(folder)), f"models: '{folder}' is listed twice"),
        (text.replace(", gemma-3-270m", f", {other}"), f"models: '{other}' is listed twice"),  # one folder
        (re.sub(r"models: .*\n", "models: []\n", text), "models: List should have at least 1 item"),
    ):
        config.write_text(edited)
        with pytest.raises(InputError, match=re.escape(message)):
            load_config(config)


def test_one_model_in_models_is_model(model_folder, tmp_path):
    folder = model_folder("llama")
    config = study_of(tmp_path, [folder])
    single = tmp_path / "single.yaml"
    single.write_text(config.read_text().replace(f"models: [{folder}]", f"model: {folder}"))
    listed, plain = load_config(config), load_config(single)
    assert listed.models is None and listed == plain and listed.model_list() == [str(folder)]


def test_relative_models_resolve_against_the_config_and_help_lists_the_key(model_folder, tmp_path):
    (tmp_path / "tiny").symlink_to(model_folder("llama"))
    config = study_of(tmp_path, ["tiny", "gemma-3-270m"])
    assert load_config(config).model_list() == [str(tmp_path / "tiny"), "gemma-3-270m"]
    assert re.search(r"^models  \(required: model or models\)", describe(), re.M)
    solo = load_config(config).for_model("gemma-3-270m")
    assert solo.model == "gemma-3-270m" and solo.models is None and solo.languages == ["ja", "ko"]


def test_slugs_are_folder_names_unique_within_the_study():
    names = ["gemma-3-270m", "/a/model", "/b/model/", "org/Some Model", "x/y.gguf", "/c/models.json"]
    assert model_slugs(names) == ["gemma-3-270m", "model", "model-2", "Some-Model", "y", "models.json-2"]


def test_a_missing_second_model_is_reported_before_anything_runs(model_folder, tmp_path):
    config = study_of(tmp_path, [model_folder("llama"), tmp_path / "nope"])
    result = run("run", config, "--out", tmp_path / "run")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: models.1: model '") and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the study of several models


def test_each_model_has_its_own_run_and_the_top_level_compares_them(study):
    out, folders, slugs = study
    for slug, folder in zip(slugs, folders, strict=True):
        manifest = read_manifest(out / slug, "run")
        assert manifest["model"] == str(folder) and "latent" in manifest["steps"]
        assert 'id="findings"' in (out / slug / "report.html").read_text(encoding="utf-8")
    manifest = read_manifest(out, "run")  # checks the digests of the comparison's files
    assert manifest["models"] == [{"name": str(f), "run": s} for f, s in zip(folders, slugs, strict=True)]
    figures = {"models_mknn.png", "models_gap.png", "models_layers.png"}
    assert set(manifest["files"]) == {"models.json", "report.html", *figures}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="models"' in html and html.count("data:image/png;base64,") == 3 and 'src=""' not in html
    assert all(f'href="{slug}/report.html"' in html for slug in slugs)
    assert not (out / "latent").exists()  # no step runs at the top level


def test_models_json_holds_each_models_own_numbers_over_relative_depth(study):
    out, folders, slugs = study
    models = json.loads((out / "models.json").read_text())["models"]
    assert [m["label"] for m in models] == [m["run"] for m in models] == slugs
    assert [m["num_layers"] for m in models] == [4, 6]
    for m in models:
        run_folder = out / m["run"]
        layers = m["num_layers"]
        assert m["depth"] == [layer / layers for layer in range(layers)]
        latent = LatentResult.load(run_folder / "latent")
        specificity = SpecificityResult.load(run_folder / "specificity")
        assert list(m["languages"]) == ["ja", "ko"]
        for lang, entry in m["languages"].items():
            curves = latent.pairs[lang]
            assert entry["latent"]["mknn"] == {"value": curves.mknn, **_band(curves, "mknn")}
            gap = [p - q for p, q in zip(curves.parallel_sim_centered, curves.nonparallel_sim_centered, strict=True)]
            assert entry["latent"]["gap"] == {"value": gap, **_band(curves, "gap")} and len(gap) == layers
            assert entry["latent"]["n"] == 20
            assert entry["latent"]["mknn_peak"]["layer"] == curves.mknn.index(max(curves.mknn))
            for neuron_type in ("type1", "type2"):
                top = Detection.load(run_folder / "detect" / lang / neuron_type).top
                naive = [sum(1 for layer, _, _ in top if layer == at) / len(top) for at in range(layers)]
                assert entry["top_layers"][neuron_type] == {"top_n": 30, "share": naive}
                target = specificity.sets[f"{lang}-{neuron_type}"].labellings["target"]
                assert entry["specificity"][neuron_type] == {
                    "top": target.top.to_json(),
                    "random": target.random.to_json(),
                }
            ablation = AblationResult.load(run_folder / "ablate" / lang)
            summary = {c: {k: e.to_json() for k, e in metrics.items()} for c, metrics in ablation.summary.items()}
            assert entry["ablation"] == {"n_pairs": 20, "top_k": 8, "summary": summary}
            assert "effect_vs_random" in summary["deactivated"]["mean_mknn"]


def _band(curves, name: str) -> dict:
    return {"ci_low": curves.ci_low[name], "ci_high": curves.ci_high[name]}


def test_rerun_reuses_every_models_steps(study):
    out, _, _ = study
    config = out.parent / "study.yaml"
    again = run("run", config, "--out", out, "--quiet")
    assert again.exit_code == 0, again.output
    statuses = re.findall(r"^\[\d+/\d+\] \S+: (reused|done)", again.output, re.M)
    assert statuses and set(statuses) == {"reused"} and len(statuses) == 20


# ---------------------------------------------------------------- compare


def test_compare_of_the_finished_runs_gives_the_studys_models_json(study, tmp_path):
    out, _, slugs = study
    result = run("compare", *(out / slug for slug in slugs), "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    ours = json.loads((tmp_path / "cmp" / "models.json").read_text())
    theirs = json.loads((out / "models.json").read_text())
    for model in (*ours["models"], *theirs["models"]):
        model.pop("run")
    assert ours == theirs
    manifest = read_manifest(tmp_path / "cmp", "compare")
    assert manifest["runs"] == [str(out / slug) for slug in slugs]
    assert 'id="models"' in (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")


def test_an_analysis_a_run_left_out_is_shown_as_a_dash(study, tmp_path):
    import shutil

    out, _, slugs = study
    trimmed = tmp_path / "trimmed"
    shutil.copytree(out / slugs[0], trimmed)
    manifest = json.loads((trimmed / "manifest.json").read_text())
    manifest["steps"] = {name: s for name, s in manifest["steps"].items() if not name.startswith("ablate/")}
    (trimmed / "manifest.json").write_text(json.dumps(manifest))
    for lang in ("ja", "ko"):
        shutil.rmtree(trimmed / "ablate" / lang)
    result = run("compare", trimmed, out / slugs[1], "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    models = json.loads((tmp_path / "cmp" / "models.json").read_text())["models"]
    assert [m["languages"]["ja"]["ablation"] is None for m in models] == [True, False]
    assert models[0]["languages"]["ja"]["latent"] is not None
    html = (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    assert re.search(rf'<td class="l">ja</td><td class="l">{slugs[0]}</td><td>–</td>', html)
