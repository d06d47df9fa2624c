"""The contract every analysis result keeps: `save(out)` writes its files and then `manifest.json`
(last, with every file's sha256), `load(out)` reads a complete folder back, `summary_lines()` is
what the command line prints.

Saving first removes an old `manifest.json`, so a folder whose rewrite is interrupted never looks
complete; reading checks the recorded digests, so a folder mixing two runs is refused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from transfer_neurons.artifacts.io import file_digest, read_json
from transfer_neurons.artifacts.manifest import write_manifest
from transfer_neurons.artifacts.names import MANIFEST
from transfer_neurons.errors import InputError


class Result(ABC):
    """Base of the analyses' typed results (dataclasses)."""

    command: ClassVar[str]  # the CLI command (and manifest "command") of the analysis

    @abstractmethod
    def write_files(self, out: Path) -> list[str]:
        """Write every artifact but the manifest into `out`; return their file names."""

    @abstractmethod
    def manifest_fields(self) -> dict[str, Any]:
        """What the manifest records besides inputs, files and versions: model, settings, seed, timings."""

    @abstractmethod
    def summary_lines(self) -> list[str]:
        """A few lines for the console."""

    def save(self, out: str | Path, inputs: dict[str, Any] | None = None) -> Path:
        """Write the artifacts into `out` (atomically, one by one) and `manifest.json` last."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
        names = self.write_files(out)
        write_manifest(
            out,
            self.command,
            **self.manifest_fields(),
            inputs=inputs or {},
            files={name: file_digest(out / name) for name in names},
        )
        return out


def read_manifest(out: str | Path, command: str | None = None) -> dict[str, Any]:
    """The manifest of a complete result folder; InputError when it is missing, of another command,
    or when a file it lists is missing or changed since."""
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        raise InputError(f"'{out}' holds no complete result (no {MANIFEST}); rerun the command that writes it")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise InputError(f"'{path}' is not valid JSON; rerun the command that writes it") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"'{path}' is not a manifest")
    if command is not None and manifest.get("command") != command:
        raise InputError(f"'{out}' holds a '{manifest.get('command')}' result, not '{command}'")
    for name, digest in (manifest.get("files") or {}).items():
        file = out / name
        if not file.is_file() or file_digest(file) != digest:
            raise InputError(f"'{file}' is missing or changed since {MANIFEST} was written; rerun the command")
    return manifest
