"""JSONL written from hostile text reads back line by line, however the reader splits lines: every
character that `str.splitlines` breaks on (\\n, \\r, \\v, \\f, \\x1c-\\x1e, \\x85, U+2028, U+2029) is escaped,
and RTL marks, zero-width characters and emoji survive unchanged."""

from __future__ import annotations

import io as stdio
import json

import pytest

from helpers import run
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import json_line, read_jsonl, write_jsonl
from transfer_neurons.data.pairs import ParallelData, read_pairs, write_pairs

BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
HOSTILE = [
    "مرحبا\u200f بالعالم",  # Arabic with a right-to-left mark
    "zero\u200bwidth\u200djoiner\ufeff",  # zero-width space, joiner, BOM
    "emoji 👩‍👩‍👧 🇯🇵 😀",
    "line\u2028separator\u2029paragraph",
    "next\x85line and \x1cfile\x1dgroup\x1erecord",
    "carriage\rreturn\r\nand\vtab\fform",
    "\u202eoverride\u202c and \u2066isolate\u2069",
]


def splitters(text: str) -> dict[str, list[str]]:
    """The lines of `text` as different readers see them."""
    return {
        "str.splitlines": text.splitlines(),
        "file iteration": list(stdio.StringIO(text, newline=None)),
        "split on \\n": text.split("\n")[:-1],
    }


def test_every_line_break_character_is_escaped():
    for char in BREAKS:
        line = json_line({"text": f"a{char}b"})
        assert line.count("\n") == 1 and line.endswith("\n") and len(line.splitlines()) == 1, repr(char)
        assert json.loads(line) == {"text": f"a{char}b"}
    assert not any(ch in json_line({"x": BREAKS})[:-1] for ch in BREAKS)
    assert json_line({"x": "日本語 😀\u200f"}) == '{"x": "日本語 😀\u200f"}\n'  # readable, not \\u-escaped


def test_hostile_rows_round_trip(tmp_path):
    rows = [{"k": k, "text": text, "nested": {"list": [text, text[::-1]]}} for k, text in enumerate(HOSTILE)]
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows)
    text = path.read_text(encoding="utf-8")
    for reader, lines in splitters(text).items():
        assert [json.loads(line) for line in lines] == rows, reader
    assert read_jsonl(path) == rows


def test_hostile_pairs_round_trip(tmp_path):
    pairs = ParallelData("ja", [f"en {k}: {t}" for k, t in enumerate(HOSTILE)], HOSTILE)
    path = write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(HOSTILE)
    assert read_pairs(path, "ja") == pairs


@pytest.mark.parametrize(
    "command, rows, field", [("output-lang", "output_lang", "prompt"), ("logit-lens", "logit_lens", "sentence")]
)
def test_command_rows_of_hostile_prompts(model_folder, tmp_path, command, rows, field):
    """The probe's case: prompts with RTL marks, zero-width characters, emoji and line separators."""
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"en": "x", "ja": t}) + "\n" for t in HOSTILE), encoding="utf-8")
    out = tmp_path / "out"
    args = [command, "--model", model_folder("llama"), "--data", data, "--lang", "ja", "--bootstrap", "0"]
    extra = ["--max-new-tokens", "3"] if command == "output-lang" else []
    result = run(*args, *extra, "--out", out, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    text = (out / names.rows(rows)).read_text(encoding="utf-8")
    for reader, lines in splitters(text).items():
        read = [json.loads(line) for line in lines]
        assert [r[field] for r in read] == HOSTILE, reader
