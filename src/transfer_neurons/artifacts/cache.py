"""The cache folder: converted models and fetched corpora live there, shared by every run."""

from __future__ import annotations

import os
from pathlib import Path

from transfer_neurons.errors import InputError

_checked: set[Path] = set()


def cache_dir() -> Path:
    """Where converted models and downloaded corpora live (created on demand by the caller).

    The first call for a folder checks that it can be one: an InputError naming the environment
    variable to fix when it is a file or cannot be written, instead of a traceback mid-run."""
    root, variable = _root()
    if root not in _checked:
        _check(root, variable)
        _checked.add(root)
    return root


def _root() -> tuple[Path, str]:
    """The cache folder and the environment variable it comes from."""
    root = os.environ.get("TRANSFER_NEURONS_CACHE")
    if root:
        return Path(root), "TRANSFER_NEURONS_CACHE"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "transfer-neurons", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "transfer-neurons", "HOME"


def _check(root: Path, variable: str) -> None:
    """InputError when `root` (or the nearest folder above it that exists) is a file or not writable."""
    where = f"{variable}='{os.environ.get(variable, '')}'"
    if variable != "TRANSFER_NEURONS_CACHE":
        where = f"the cache folder '{root}' (from {where})"
    fix = "point TRANSFER_NEURONS_CACHE at a writable folder"
    existing = next((p for p in [root, *root.parents] if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise InputError(f"{where}: '{existing}' is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{where}: cannot write under '{existing}'; {fix}")
