"""Neuron sets that the command tests of several modules read."""

from __future__ import annotations

import pytest

from helpers import EXAMPLES, run


@pytest.fixture(scope="module")
def detected(model_folder, tmp_path_factory):
    """Type-1 and Type-2 'ja' neuron sets of the tiny Llama (40 each)."""
    out = {}
    for neuron_type in ("type1", "type2"):
        folder = tmp_path_factory.mktemp(neuron_type)
        result = run(
            "detect",
            "--model",
            model_folder("llama"),
            "--lang",
            "ja",
            "--type",
            neuron_type,
            "--data",
            EXAMPLES,
            "--out",
            folder,
            "--top-n",
            "40",
            "--max-sentences",
            "24",
            "--device",
            "cpu",
            "--quiet",
        )
        assert result.exit_code == 0, result.output
        out[neuron_type] = folder
    return out
