"""Text that cannot be tokenized, and inputs longer than the model's context, on every command that
reads sentences: one `error:` line naming the problem, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest

from helpers import EXAMPLES, assert_error, run

DEV = ["--device", "cpu", "--quiet"]
ROWS = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()[:24]]


def pair_file(folder, bad: str, line: int = 5):
    """The example pairs with the ja sentence of `line` (1-based) replaced by `bad`, raw JSON text."""
    lines = [json.dumps(row, ensure_ascii=False) for row in ROWS]
    lines[line - 1] = '{"en": "Hello there.", "ja": "' + bad + '"}'
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def commands(model, neurons, data, out):
    """Every command that reads sentences from --data, with the options it needs."""
    return {
        "detect": ["detect", "--model", model, "--lang", "ja", "--data", data, "--out", out, "--top-n", "5"],
        "latent": ["latent", "--model", model, "--data", data, "--out", out, "--k", "3"],
        "ablate": [
            "ablate",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "5",
            "--data",
            data,
            "--out",
            out,
            "--k",
            "3",
        ],
        "specificity": [
            "specificity",
            "--model",
            model,
            "--neurons",
            neurons,
            "--data",
            data,
            "--data",
            data,
            "--langs",
            "ja,en",
            "--top-n",
            "5",
            "--out",
            out,
        ],
        "output-lang": [
            "output-lang",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "5",
            "--data",
            data,
            "--max-prompts",
            "24",
            "--max-new-tokens",
            "2",
            "--out",
            out,
        ],
        "logit-lens": [
            "logit-lens",
            "--model",
            model,
            "--neurons",
            neurons,
            "--top-k",
            "5",
            "--data",
            data,
            "--out",
            out,
        ],
    }


COMMANDS = ["detect", "latent", "ablate", "specificity", "output-lang", "logit-lens"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [("\\ud800 broken", "line 5 holds invalid Unicode"), ("nul\\u0000here", "line 5 holds a NUL character")],
)
def test_untokenizable_text(model_folder, detected, tmp_path, command, bad, message):
    out = tmp_path / "out"
    args = commands(model_folder("llama"), detected["type1"] / "neurons.json", pair_file(tmp_path, bad), out)
    assert_error(run(*args[command], *DEV), message, out)


@pytest.mark.parametrize("command", COMMANDS)
def test_input_longer_than_the_context(model_folder, detected, tmp_path, command):
    out = tmp_path / "out"
    long = " ".join(["word"] * 400)  # the tiny models have 256 positions
    args = commands(model_folder("llama"), detected["type1"] / "neurons.json", pair_file(tmp_path, long), out)
    assert_error(run(*args[command], *DEV), "exceed the model's context of 256 positions", out)


def test_prompt_and_answer_budget_longer_than_the_context(model_folder, detected, tmp_path):
    out = tmp_path / "out"
    long = " ".join(["word"] * 230)  # fits alone, not with 40 tokens to generate
    args = commands(model_folder("llama"), detected["type1"] / "neurons.json", pair_file(tmp_path, long), out)
    result = run(*args["output-lang"][:-4], "--max-new-tokens", "40", "--out", out, *DEV)
    assert_error(result, "+ 40 to generate", out)


def test_txt_file_that_is_not_utf8(model_folder, detected, tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"caf\xe9\n")
    out = tmp_path / "out"
    result = run(
        "output-lang",
        "--model",
        model_folder("llama"),
        "--neurons",
        detected["type1"] / "neurons.json",
        "--lang",
        "ja",
        "--top-k",
        "5",
        "--data",
        path,
        "--out",
        out,
        *DEV,
    )
    assert_error(result, "is not UTF-8 text", out)


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("qa", '{"question": "broken \\ud800", "answers": ["x"], "lang": "ja"}'),
        ("mc", '{"question": "nul\\u0000", "options": ["a", "b"], "answer": "A", "lang": "ja"}'),
    ],
)
def test_question_files_with_untokenizable_text(model_folder, tmp_path, command, line):
    path = tmp_path / "items.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run(command, "--model", model_folder("llama"), "--lang", "ja", "--data", path, "--out", out, *DEV)
    assert_error(result, "line 1 holds", out)
