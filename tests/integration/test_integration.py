"""Integration: a small study on the real Gemma-3-270M with a few real Tatoeba sentences."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transfer_neurons.cli import app

pytestmark = pytest.mark.integration
TATOEBA = Path(__file__).resolve().parents[1] / "data" / "tatoeba"


def test_gemma_study_end_to_end_and_resume(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(f"""model: gemma-3-270m
languages: [ja, it]
device: cpu
data:
  source: files
  max_sentences: 24
  files:
    ja: {{train: {TATOEBA}/en-ja.train.jsonl, test: {TATOEBA}/en-ja.test.jsonl,
          nonparallel: {TATOEBA}/en-ja.nonparallel.jsonl}}
    it: {{train: {TATOEBA}/en-it.train.jsonl}}
detect: {{top_n: 50}}
latent: {{k: 5}}
ablate: {{top_k: 20}}
characterise: {{top_n: 50}}
downstream: {{top_k: 20, max_questions: 4}}
""")
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    html = (out / "report.html").read_text(encoding="utf-8")
    for section in (
        "Model and data",
        "Latent-space dynamics",
        "Transfer neurons",
        "Deactivation vs random baseline",
        "Language specificity and overlap",
        "Downstream effects",
        "Steps and timings",
    ):
        assert section in html
    neurons = json.loads((out / "detect" / "ja" / "type1" / "neurons.json").read_text())
    assert neurons["layers"] == list(range(11)) and len(neurons["top"]) == 50  # 18 layers: Type-1 = 0..10

    (out / "latent" / "mknn.png").unlink()
    second = runner.invoke(app, ["run", str(config), "--out", str(out), "--quiet"])
    done = re.findall(r"^\[\d+/\d+\] (\S+): done", second.output, re.M)
    assert done == ["latent"], second.output
