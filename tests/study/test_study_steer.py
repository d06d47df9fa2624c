"""The study's `steer:` section (off by default): one step per target language, the steer command's
files, means read from the store the detection steps filled, and the two Findings rows."""

from __future__ import annotations

import json
import re

from helpers import run, write_study
from transfer_neurons.analyses.steer import SteerResult
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


def test_study_steers_and_reports_findings(tmp_path, model_folder):
    config = study_config(tmp_path, model_folder)
    steps = [step.name for step in plan(load_config(config))]
    assert "steer/ja" in steps and "steer/ko" not in steps
    result = run("run", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    loaded = SteerResult.load(tmp_path / "run" / "steer" / "ja")
    assert loaded.settings["sets"] == ["ja-type2", "ja-type1"] and loaded.seed == 0
    assert loaded.means.languages == ("en", "ja", "ko")
    rows = json.loads((tmp_path / "run" / "findings.json").read_text())["rows"]
    claims = {row["claim"]: row for row in rows}
    assert {"type2_steer", "other_steer"} <= set(claims)
    assert claims["type2_steer"]["text"].startswith("The target language's Type-2 neurons force output")
    assert (
        "ja-type1" in claims["other_steer"]["units"]
        and claims["type2_steer"]["n"] == loaded.settings["n_prompts"]["test"]
    )
