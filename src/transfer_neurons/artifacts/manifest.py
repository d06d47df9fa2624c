"""manifest.json: what a command read (with hashes), its settings, seed, timings and versions."""

from __future__ import annotations

import importlib.metadata
import platform
from functools import cache
from pathlib import Path
from typing import Any

import torch
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

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


LOCK = Path(__file__).resolve().parents[3] / "requirements.lock"  # beside pyproject.toml in a clone


@cache
def install_state(lock: Path = LOCK) -> dict[str, Any]:
    """Whether the installed packages are the versions of the repository's lock (what CI tested):
    every locked package that applies to this platform and is installed has its locked version.
    Packages of extras that are not installed do not count; torch is chosen by TORCH_SPEC."""
    if not lock.is_file():
        return {"lock": None, "matches": None, "note": "installed without the repository's requirements.lock"}
    differs: dict[str, dict[str, str]] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            locked = str(requirement.specifier).removeprefix("==")
            differs[canonicalize_name(requirement.name)] = {"installed": installed, "locked": locked}
    return {"lock": lock.name, "sha256": file_digest(lock), "matches": not differs, "differs": differs}


def data_inputs(**paths: str | Path | None) -> dict[str, dict[str, str]]:
    """Each named input file with its sha256 (None entries are left out)."""
    return {name: {"path": str(p), "sha256": file_digest(p)} for name, p in paths.items() if p is not None}


def write_manifest(out: str | Path, command: str, **fields: Any) -> None:
    """Write `out/manifest.json` (last, so that its presence marks a complete result)."""
    write_json(
        Path(out) / MANIFEST,
        {
            "schema_version": SCHEMA_VERSION,
            "command": command,
            **fields,
            "versions": versions(),
            "install": install_state(),
        },
    )
