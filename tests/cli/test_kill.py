"""A rerun into a finished result folder that is killed (SIGKILL) half-way through writing never
leaves a folder that looks complete: the old manifest is gone, loading refuses the folder, and a
neuron set read from it is refused too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from helpers import EXAMPLES, run
from transfer_neurons.analyses.ablate import AblationResult
from transfer_neurons.analyses.detect import Detection
from transfer_neurons.analyses.specificity import SpecificityResult
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.errors import InputError

# Runs the CLI in a child process that kills itself (SIGKILL, no clean-up) right after its
# KILL_AFTER-th atomic file write.
KILLER = """
import os, signal, sys
from contextlib import contextmanager
from transfer_neurons.artifacts import io

original, written = io.atomic_path, []

@contextmanager
def dying(path):
    with original(path) as tmp:
        yield tmp
    written.append(path)
    if len(written) >= int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)

io.atomic_path = dying
from transfer_neurons.cli import main
sys.argv = ["transfer-neurons", *sys.argv[1:]]
main()
"""
DEV = ["--device", "cpu", "--quiet"]


def killed(*args: object, after: int = 1) -> None:
    env = {**os.environ, "KILL_AFTER": str(after)}
    result = subprocess.run(
        [sys.executable, "-c", KILLER, *map(str, args)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def assert_incomplete(out, result_type) -> None:
    assert not (out / "manifest.json").exists()
    with pytest.raises(InputError, match="no complete result"):
        result_type.load(out)


@pytest.mark.parametrize("after", [1, 2])
def test_killed_detect_rerun(model_folder, tmp_path, after):
    out = tmp_path / "out"
    common = ["detect", "--model", model_folder("llama"), "--lang", "ja", "--data", EXAMPLES, "--out", out]
    assert run(*common, "--type", "type1", "--top-n", "20", "--max-sentences", "12", *DEV).exit_code == 0
    killed(*common, "--type", "type2", "--top-n", "20", "--max-sentences", "12", *DEV, after=after)
    assert_incomplete(out, Detection)
    with pytest.raises(InputError, match="incomplete detect folder"):
        read_neurons(out)


def test_killed_ablate_rerun(model_folder, detected, tmp_path):
    out = tmp_path / "out"
    common = ["ablate", "--model", model_folder("llama"), "--neurons", detected["type1"] / "neurons.json"]
    common += ["--data", EXAMPLES, "--max-sentences", "24", "--k", "3", "--out", out, *DEV]
    assert run(*common, "--top-k", "20").exit_code == 0
    AblationResult.load(out)
    killed(*common, "--top-k", "10", after=2)
    assert_incomplete(out, AblationResult)


def test_killed_specificity_rerun(model_folder, detected, tmp_path):
    out = tmp_path / "out"
    common = ["specificity", "--model", model_folder("llama"), "--neurons", detected["type1"] / "neurons.json"]
    common += ["--data", EXAMPLES, "--data", EXAMPLES, "--langs", "ja,en", "--max-sentences", "20", "--out", out]
    assert run(*common, "--top-n", "20", *DEV).exit_code == 0
    SpecificityResult.load(out)
    killed(*common, "--top-n", "10", *DEV, after=1)
    assert_incomplete(out, SpecificityResult)
