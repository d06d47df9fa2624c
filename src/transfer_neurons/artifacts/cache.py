"""The cache folder: converted models and fetched corpora live there, shared by every run."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models and downloaded corpora live (created on demand)."""
    root = os.environ.get("TRANSFER_NEURONS_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "transfer-neurons"
