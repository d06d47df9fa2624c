"""Small data sets shipped inside the package (examples/): Tatoeba pairs, the QA and MC sets, the demo study."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUILTIN_TASK_LANGS = ("en", "ja", "ko", "nl", "it")  # the languages of the built-in QA and multiple-choice sets


def example_data(name: str = "en-ja.jsonl") -> Path:
    """Path of a file shipped in the package's examples/ folder (en-ja.jsonl: Tatoeba, CC-BY 2.0 FR)."""
    return Path(str(resources.files("transfer_neurons") / "examples" / name))
