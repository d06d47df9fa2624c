"""manifest.json: what a command read (with hashes), its settings, seed, timings and versions."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import torch

from transfer_neurons.artifacts.io import file_digest, write_json
from transfer_neurons.artifacts.names import MANIFEST, SCHEMA_VERSION


def versions() -> dict[str, str]:
    import transformers

    return {
        "transfer_neurons": importlib.metadata.version("transfer-neurons"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def data_inputs(**paths: str | Path | None) -> dict[str, dict[str, str]]:
    """Each named input file with its sha256 (None entries are left out)."""
    return {name: {"path": str(p), "sha256": file_digest(p)} for name, p in paths.items() if p is not None}


def write_manifest(out: str | Path, command: str, **fields: Any) -> None:
    """Write `out/manifest.json` (last, so that its presence marks a complete result)."""
    write_json(
        Path(out) / MANIFEST, {"schema_version": SCHEMA_VERSION, "command": command, **fields, "versions": versions()}
    )
