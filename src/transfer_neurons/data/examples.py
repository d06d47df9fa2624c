"""Small data sets shipped inside the package (examples/): Tatoeba pairs, the QA and MC sets, the demo study."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_data(name: str = "en-ja.jsonl") -> Path:
    """Path of a file shipped in the package's examples/ folder (en-ja.jsonl: Tatoeba, CC-BY 2.0 FR)."""
    return Path(str(resources.files("transfer_neurons") / "examples" / name))
