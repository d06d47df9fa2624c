"""What several test modules share: the example pairs, the CLI runner, a tiny study config, and
the check of a bad-input error (one `error:` line, exit 2, nothing written)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from transfer_neurons.cli import app
from transfer_neurons.data.examples import example_data

EXAMPLES = example_data()
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def detect_args(model, data, out, *extra):
    return [
        "detect",
        "--model",
        model,
        "--lang",
        "ja",
        "--data",
        data,
        "--out",
        out,
        "--device",
        "cpu",
        "--quiet",
        "--max-sentences",
        "12",
        *extra,
    ]


def assert_error(result, message, out):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir())


def write_study(folder, model_folder, extra: str = "") -> object:
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:40]]
    (folder / "ja.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    other = [{"en": r["en"], "ko": r["ja"][::-1]} for r in rows]
    (folder / "ko.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in other), encoding="utf-8")
    path = folder / "study.yaml"
    path.write_text(
        f"""model: {model_folder}
languages: [ja, ko]
device: cpu
batch_size: 8
data:
  source: files
  files:
    ja: {{train: ja.jsonl}}
    ko: {{train: ko.jsonl, nonparallel: ko.jsonl}}
detect: {{top_n: 30}}
latent: {{k: 3}}
ablate: {{top_k: 8}}
downstream: {{max_questions: 3, top_k: 8}}
characterise: {{top_n: 20}}
{extra}""",
        encoding="utf-8",
    )
    return path
