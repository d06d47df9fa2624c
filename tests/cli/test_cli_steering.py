"""The summary line of export-steering: how many neurons, what the factor does, where they are."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from helpers import run
from transfer_neurons.cli.steering import steering_summary
from transfer_neurons.hooks.interventions import Intervention


@pytest.mark.parametrize(
    "factor, effect",
    [
        (0.0, "deactivated (factor 0)"),
        (4.0, "amplified (factor 4)"),
        (0.5, "damped (factor 0.5)"),
        (-1, "flipped (factor -1)"),
    ],
)
def test_steering_summary(factor, effect):
    neurons = [(0, 1), (0, 2), (1, 7), (2, 3), (5, 0), (7, 1), (8, 2)]
    summary = steering_summary(Intervention.of(neurons, factor, "all"), factor)
    assert summary == f"7 neurons {effect} in layers 0-2, 5, 7-8 (per layer: L0 2, L1 1, L2 1, L5 1, L7 1, L8 1)"
    assert steering_summary(Intervention.of([(3, 1)], 0.0, "all"), 0.0).endswith("in layer 3 (per layer: L3 1)")


def test_export_steering_prints_the_summary(detected, tmp_path):
    neurons = detected["type1"] / "neurons.json"
    result = run("export-steering", "--neurons", neurons, "--top-k", "20", "--factor", "4", "--out", tmp_path / "s.pt")
    assert result.exit_code == 0, result.output
    counts = sorted(Counter(layer for layer, _, _ in json.loads(neurons.read_text())["top"][:20]).items())
    per_layer = ", ".join(f"L{layer} {count}" for layer, count in counts)
    assert result.output.startswith(f"wrote {tmp_path / 's.pt'}: 20 neurons amplified (factor 4) in layer")
    assert result.output.rstrip().endswith(f"(per layer: {per_layer})")
