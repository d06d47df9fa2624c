"""Study config validation, resumable steps and the report, on a tiny model."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from helpers import run, write_study
from transfer_neurons.errors import InputError
from transfer_neurons.study.config import StudyConfig, describe, load_config
from transfer_neurons.study.tables import load_run


def step_lines(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\[\d+/\d+\] (\S+): (reused|done)", output, re.M))


def test_study_runs_resumes_and_reports(model_folder, tmp_path):
    config = write_study(tmp_path, model_folder("llama"))
    out = tmp_path / "run"
    first = run("run", config, "--out", out, "--quiet")
    assert first.exit_code == 0, first.output
    steps = step_lines(first.output)
    assert set(steps.values()) == {"done"} and len(steps) == 18
    assert {"specificity", "overlap", "qa/ja", "qa/ko", "mc/ja", "mc/ko", "output_lang/ja", "output_lang/ko"} < set(
        steps
    )
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.index('id="findings"') < html.index('id="summary"')  # the report opens with the findings
    findings = json.loads((out / "findings.json").read_text())
    claims = {(row["claim"], row["lang"]) for row in findings["rows"]}
    assert claims == {
        (claim, lang)
        for claim in ("middle_peak", "type1_alignment", "type2_specific", "type2_output", "type1_qa")
        for lang in ("ja", "ko")
    }
    assert findings["tests"] == len(findings["rows"]) == 10
    assert f"over the {findings['tests']} tests of this table" in html
    assert all("p_adjusted" in row for row in findings["rows"]) and "adjusted p" in html
    for row in findings["rows"]:
        assert row["verdict"] in ("holds", "does not hold", "inconclusive") and row["n"] > 0
        assert row["ci"] is not None and row["ci"][0] <= row["ci"][1] and 0 < row["p"] <= 1
    for section in (
        "Findings",
        "Model and data",
        "Latent-space dynamics",
        "Transfer neurons",
        "Deactivation vs random baseline",
        "Language specificity and overlap",
        "Downstream effects",
        "Steps and timings",
    ):
        assert section in html
    assert html.count("data:image/png;base64,") >= 5 + 4 + 3 + 3  # latent, ablation, characterisation, downstream
    assert "<details" in html and "[" in html  # folded parts; intervals in the tables
    links = re.findall(r'href="(neurons/n/\d+_\d+\.html)"', html)  # top-neuron rows link to their pages
    assert links and all((out / link).is_file() for link in links) and (out / "neurons" / "index.html").is_file()
    assert 'src=""' not in html  # every referenced figure exists
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and all(len(h) == 64 for h in manifest["inputs"].values())
    assert set(manifest["steps"]) == set(steps) and "total" in manifest["timings_s"]

    for step in steps:  # every step folder is a complete result with its manifest
        manifest = json.loads((out / step / "manifest.json").read_text())
        assert manifest["schema_version"] == 1 and all((out / step / name).is_file() for name in manifest["files"])

    second = run("run", config, "--out", out, "--quiet")
    assert set(step_lines(second.output).values()) == {"reused"}

    (out / "detect" / "ko" / "type2" / "scores.safetensors").unlink()
    (out / "ablate" / "ja" / "ablation.json").write_text("{}")  # a damaged artifact is not trusted
    third = step_lines(run("run", config, "--out", out, "--quiet").output)
    assert {name for name, status in third.items() if status == "done"} == {"detect/ko/type2", "ablate/ja"}

    forced = step_lines(run("run", config, "--out", out, "--quiet", "--force").output)
    assert set(forced.values()) == {"done"}


def test_changed_setting_recomputes_only_dependent_steps(model_folder, tmp_path):
    config = write_study(tmp_path, model_folder("llama"), "seed: 0\n")
    out = tmp_path / "run"
    assert run("run", config, "--out", out, "--quiet").exit_code == 0
    config.write_text(config.read_text().replace("ablate: {top_k: 8}", "ablate: {top_k: 5}"))
    steps = step_lines(run("run", config, "--out", out, "--quiet").output)
    assert {name for name, status in steps.items() if status == "done"} == {"ablate/ja", "ablate/ko"}


BAD = {  # (text to replace, replacement, expected message)
    "unknown key": ("seed: 0", "colour: blue", "colour: Extra inputs are not permitted"),
    "wrong type": ("batch_size: 8", "batch_size: many", "batch_size: Input should be a valid integer"),
    "nested value": ("detect: {top_n: 30}", "detect: {types: [type3]}", "detect.types.0: Input should be 'type1'"),
    "bad language code": ("languages: [ja, ko]", "languages: [ja, 'x!']", "languages: 'x!' is not a language code"),
    "en as L2": ("languages: [ja, ko]", "languages: [en]", "languages: 'en' is the other side"),
    "top_k above top_n": ("ablate: {top_k: 8}", "ablate: {top_k: 31}", "ablate.top_k 31 exceeds detect.top_n 30"),
}


@pytest.mark.parametrize("case", BAD)
def test_config_errors_name_key_and_reason(model_folder, tmp_path, case):
    old, new, message = BAD[case]
    config = write_study(tmp_path, model_folder("llama"), "seed: 0\n")
    config.write_text(config.read_text().replace(old, new))
    result = run("run", config, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_missing_data_file(model_folder, tmp_path):
    config = write_study(tmp_path, model_folder("llama"))
    (tmp_path / "ko.jsonl").unlink()
    with pytest.raises(InputError, match="data.files.ko.train: file .* does not exist"):
        load_config(config)


def test_missing_and_invalid_config_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(bad)


def test_toml_config(model_folder, tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(f'model = "{model_folder("llama")}"\nlanguages = ["ja"]\n[detect]\ntop_n = 5\n')
    config = load_config(path)
    assert config.detect.top_n == 5 and config.latent.k == 10 and config.data.source == "udhr"
    assert config.ablate.top_k == config.characterise.top_n == config.downstream.top_k == 5  # defaults capped


def test_sections_inherit_the_shared_keys():
    raw = {"model": "m", "languages": ["ja"], "seed": 3, "detect": {"top_n": 30}, "methods": {"enabled": True}}
    config = StudyConfig.model_validate({**raw, "ablate": {"baseline": "uniform", "k": 4, "seed": 7}})
    assert config.data.seed == config.characterise.seed == config.downstream.seed == 3
    assert config.characterise.baseline == config.downstream.baseline == config.methods.baseline == "uniform"
    assert (config.methods.seed, config.methods.k, config.methods.top_k) == (7, 4, 30)  # ablate's, lowered like it
    assert StudyConfig.model_validate({**raw, "ablate": {"top_k": 9}}).methods.top_k == 9
    with pytest.raises(ValidationError, match="methods.top_k 31 exceeds detect.top_n 30"):
        StudyConfig.model_validate({**raw, "methods": {"enabled": True, "top_k": 31}})
    assert re.search(r"^methods.k  \(default: ablate.k\)", describe(), re.M)
    assert re.search(r"^steer.baseline_seeds  \(default: 1\)", describe(), re.M)  # steer draws its own


def test_help_config_documents_every_key():
    text = describe()
    for key in ("model", "languages", "data.holdout", "detect.top_n", "latent.k", "ablate.baseline"):
        assert re.search(rf"^{re.escape(key)}  \(", text, re.M)
    result = run("run", "--help-config")
    assert result.exit_code == 0 and "ablate.top_k" in result.output


def test_unknown_udhr_language_is_reported_before_any_step(model_folder, tmp_path, monkeypatch):
    from transfer_neurons.data import udhr

    def resolve(code):
        if code != "ja":
            raise InputError("unknown")
        return code, None

    monkeypatch.setattr(udhr, "resolve", resolve)
    config = tmp_path / "study.yaml"
    config.write_text(f"model: {model_folder('llama')}\nlanguages: [ja, qq]\n")
    result = run("run", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "languages.1: 'qq' is not in the UDHR corpus" in result.stderr
    assert not (tmp_path / "run").exists()


def test_code_version_covers_what_computes_results():
    from transfer_neurons.study.runner import PACKAGE, result_sources

    hashed = {path.relative_to(PACKAGE).as_posix() for path in result_sources()}
    assert {"analyses/detect.py", "hooks/capture.py", "metrics/scoring.py", "study/steps.py"} <= hashed
    assert "study/report.py" not in hashed and not any(name.startswith("cli/") for name in hashed)


def test_changed_bootstrap_recomputes_the_steps_that_report_intervals(model_folder, tmp_path):
    config = write_study(tmp_path, model_folder("llama"), "seed: 0\n")
    out = tmp_path / "run"
    assert run("run", config, "--out", out, "--quiet").exit_code == 0
    config.write_text(config.read_text() + "bootstrap: 50\n")
    steps = step_lines(run("run", config, "--out", out, "--quiet").output)
    redone = {name for name, status in steps.items() if status == "done"}
    assert not any(name.startswith(("data/", "detect/")) for name in redone)
    assert {"latent", "ablate/ja", "specificity", "qa/ja", "mc/ko", "output_lang/ja"} <= redone


def test_methods_section_compares_the_methods_and_the_report_shows_them(model_folder, tmp_path):
    extra = "methods: {enabled: true, languages: [ja], methods: [tn, tn-centred, ap]}\n"
    config = write_study(tmp_path, model_folder("llama"), extra)
    out = tmp_path / "run"
    result = run("run", config, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "methods" / "ja" / "methods.json").read_text())
    assert set(data["methods"]) == {"tn", "tn-centred", "ap"} and data["top_k"] == 8
    assert "p_vs_random" in data["methods"]["ap"]["ablation"]["deactivated"]["mean_mknn"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="methods"' in html and "tn-centred" in html and not (out / "methods" / "ko").exists()
    table = load_run(out)
    methods = table[table["analysis"] == "compare-methods"]
    assert set(methods["set"]) == {"tn", "tn-centred", "ap"} and set(methods["step"]) == {"methods/ja"}
    mknn = methods[(methods["metric"] == "mean_mknn") & (methods["set"] == "ap")]
    assert set(mknn["condition"]) == {"normal", "deactivated", "random"}
    ablation = data["methods"]["ap"]["ablation"]["deactivated"]["mean_mknn"]
    assert mknn[mknn["condition"] == "deactivated"]["value"].item() == pytest.approx(ablation["value"])
    jaccard = methods[(methods["metric"] == "jaccard.type1") & (methods["set"] == "tn")]
    assert jaccard["value"].item() == 1.0
