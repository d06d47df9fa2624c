"""The locked install: the lock covers every dependency, and manifests say whether it was used."""

from __future__ import annotations

import importlib.metadata
import json
import os
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from transfer_neurons.artifacts.manifest import LOCK, install_state, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def locked_names(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {canonicalize_name(Requirement(line).name) for line in lines if line and not line.startswith((" ", "#"))}


def test_the_lock_pins_every_dependency_but_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {canonicalize_name(Requirement(r).name) for r in wanted}
    assert LOCK == ROOT / "requirements.lock"
    missing = names - locked_names(LOCK) - {"torch"}
    assert not missing, f"not in requirements.lock (run make lock): {sorted(missing)}"
    assert "torch" not in locked_names(LOCK)  # TORCH_SPEC chooses it
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            assert str(Requirement(line).specifier).startswith("=="), line


@pytest.mark.skipif(
    bool(os.environ.get("TRANSFER_NEURONS_UNLOCKED")), reason="make test-latest / test-oldest install other versions"
)
def test_make_installed_the_lock():
    state = install_state()
    assert state["matches"], state["differs"]


def test_install_state_compares_installed_versions(tmp_path):
    numpy = importlib.metadata.version("numpy")
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# a comment\n"
        f"numpy=={numpy}\n    # via transfer-neurons\n"
        "not-a-package-here==1.0\n"  # an extra that is not installed does not count
        "pyyaml==0.0.1 ; sys_platform == 'no-such-platform'\n",  # nor a package of another platform
        encoding="utf-8",
    )
    state = install_state.__wrapped__(lock)
    assert state["matches"] and state["differs"] == {} and len(state["sha256"]) == 64
    lock.write_text("NumPy==0.1\n", encoding="utf-8")
    state = install_state.__wrapped__(lock)
    assert not state["matches"] and state["differs"] == {"numpy": {"installed": numpy, "locked": "0.1"}}
    assert install_state.__wrapped__(tmp_path / "absent.lock")["matches"] is None


def test_every_manifest_records_the_install(tmp_path):
    write_manifest(tmp_path, "test")
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["install"]["lock"] == "requirements.lock" and isinstance(manifest["install"]["matches"], bool)
