"""The study's `steer:` section (off by default): one step per target language, the steer command's
files, means read from the store the detection steps filled, and the two Findings rows."""

from __future__ import annotations

import json
import re

import pytest
import torch

from helpers import run, write_study
from transfer_neurons.analyses.means import language_means
from transfer_neurons.analyses.steer import SteerResult
from transfer_neurons.study import steps
from transfer_neurons.study.config import load_config
from transfer_neurons.study.runner import plan

OFF = """latent: {enabled: false, k: 3}
ablate: {enabled: false}
characterise: {specificity: false, overlap: false, pages: false}
downstream: {qa: false, mc: false, output_lang: false}
"""
STEER = "steer: {enabled: true, top_k: 5, max_prompts: 4, alphas: [1.0, 3.0], max_new_tokens: 2, bootstrap: 50}\n"


def study_config(tmp_path, model_folder, steer: str = STEER):
    config = write_study(tmp_path, model_folder("llama"))
    text = config.read_text()
    for key in ("latent", "ablate", "downstream", "characterise"):
        text = re.sub(rf"^{key}: .*\n", "", text, flags=re.M)
    config.write_text(text + OFF + steer)
    return config


def test_steer_is_off_by_default(tmp_path, model_folder):
    assert not any(
        step.name.startswith("steer/") for step in plan(load_config(study_config(tmp_path, model_folder, "")))
    )


@pytest.fixture(scope="module")
def steered(tmp_path_factory, model_folder):
    """A study with only the steer section on, toward ja and ko, run once for the tests below; the
    number of times the means were computed."""
    folder = tmp_path_factory.mktemp("steer-study")
    config = study_config(folder, model_folder, STEER.replace("{enabled: true", "{enabled: true, languages: [ja, ko]"))
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1])
        return language_means(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, "language_means", counted)
        result = run("run", config, "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run", calls


def test_steer_defaults_to_the_first_language(tmp_path, model_folder):
    steps = [step.name for step in plan(load_config(study_config(tmp_path, model_folder)))]
    assert "steer/ja" in steps and "steer/ko" not in steps


def test_means_are_computed_once_for_every_steered_language(steered):
    out, calls = steered
    assert len(calls) == 1 and list(calls[0]) == ["en", "ja", "ko"]
    ja, ko = (SteerResult.load(out / "steer" / lang).means for lang in ("ja", "ko"))
    assert ja.languages == ko.languages == ("en", "ja", "ko") and torch.equal(ja.means, ko.means)


def test_study_steers_and_reports_findings(steered):
    steered = steered[0]
    loaded = SteerResult.load(steered / "steer" / "ja")
    assert loaded.settings["sets"] == ["ja-type2", "ja-type1"] and loaded.seed == 0
    assert loaded.means.languages == ("en", "ja", "ko")
    rows = json.loads((steered / "findings.json").read_text())["rows"]
    assert {(row["claim"], row["lang"]) for row in rows} == {
        (claim, lang) for claim in ("type2_steer", "other_steer") for lang in ("ja", "ko")
    }
    claims = {row["claim"]: row for row in rows if row["lang"] == "ja"}
    assert claims["type2_steer"]["text"].startswith("The target language's Type-2 neurons force output")
    assert (
        "ja-type1" in claims["other_steer"]["units"]
        and claims["type2_steer"]["n"] == loaded.settings["n_prompts"]["test"]
    )


def test_report_shows_the_steering_section(steered):
    """One table per steered language: the unsteered model, then each set and method at the alpha
    chosen on dev with its test-split intervals, the random sets and the paired test; the dev
    grid's figure embedded."""
    steered = steered[0]
    html = (steered / "report.html").read_text(encoding="utf-8")
    assert '<a href="#steer">' in html
    section = html[html.index('id="steer"') : html.index('id="timings"')]
    assert "alpha in\n1, 3, at all positions" in section
    assert "en &rarr; ko" in section and section.count("data:image/png;base64,") == 2
    section = section[: section.index("en &rarr; ko")]
    loaded = SteerResult.load(steered / "steer" / "ja")
    n = loaded.settings["n_prompts"]
    assert "en &rarr; ja" in section and f"({n['dev']} dev, {n['test']} test prompts)" in section
    assert "Alpha chosen on the dev prompts" in section and "held-out test prompts" in section
    assert section.count("data:image/png;base64,") == 1 and 'src=""' not in section
    rows = re.findall(r"<tr><td class=\"l\">([^<]+)</td><td>([^<]*)</td><td>([^<]*)</td>", section)
    assert rows[0][0] == "normal" and len(rows) == 1 + len(loaded.chosen) == 1 + 2 * 2  # 2 sets x add, diffmean
    for cell, (label, alpha, target) in zip(loaded.chosen, rows[1:], strict=True):
        assert label == cell.label and alpha == f"{cell.key['alpha']:g}" and alpha in ("1", "3")
        assert target == cell.steered["target"].text(3) and "[" in target
        effect = cell.steered["target"].effect_vs_random
        assert effect is not None and effect.text(3) in section
    assert section.count("p = ") + section.count("p &lt; 0.001") == len(loaded.chosen)
