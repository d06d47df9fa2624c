"""The repository stands alone: a copy of its files, with nothing beside it, holds every file its tests
and docs name, and its tests collect and read their data there."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/data\b")  # files of the development workspace, not of a clone
SCANNED = ("README.md", "docs", "tests", "src")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The git-tracked and the untracked, not ignored files of the repository, copied into an empty folder."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    target = tmp_path_factory.mktemp("standalone") / "repo"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_no_file_refers_outside_the_repository(clone):
    this = Path(__file__).relative_to(ROOT)
    files = [p for top in SCANNED for p in ([clone / top] if (clone / top).is_file() else (clone / top).rglob("*"))]
    offenders = [
        f"{path.relative_to(clone)}:{number}"
        for path in files
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".txt"} and path.relative_to(clone) != this
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, offenders


def test_tests_find_their_data_in_the_copy(clone):
    tatoeba = runpy.run_path(str(clone / "tests" / "integration" / "test_integration.py"))["TATOEBA"]
    assert tatoeba.is_relative_to(clone)
    for name in ("en-ja.train.jsonl", "en-ja.test.jsonl", "en-ja.nonparallel.jsonl", "en-it.train.jsonl"):
        assert (tatoeba / name).is_file(), name
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}
    # every test module is collected from the copy; the language-ID tests read its Tatoeba sentences
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests",
        "-k",
        "test_tatoeba_sentences_identified",
    ]
    result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b4 passed\b", result.stdout) and "skipped" not in result.stdout, result.stdout[-3000:]
