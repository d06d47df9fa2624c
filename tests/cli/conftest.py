"""Neuron sets that the command tests of several modules read."""

from __future__ import annotations

import pytest

from helpers import EXAMPLES, run


@pytest.fixture(scope="module")
def detected(model_folder, tmp_path_factory):
    """Type-1 and Type-2 'ja' neuron sets of the tiny Llama (40 each)."""
    out = {}
    for kind in ("type1", "type2"):
        folder = tmp_path_factory.mktemp(kind)
        result = run(
            "detect",
            "--model",
            model_folder("llama"),
            "--lang",
            "ja",
            "--type",
            kind,
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
        out[kind] = folder
    return out
