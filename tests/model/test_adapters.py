"""The adapter table: every supported model_type has a tiny test model, and the README shows the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import ADAPTERS, adapter_for, markdown_table, supported_model_types
from transfer_neurons.testing import EXTRA

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_model_type_has_a_tiny_model():
    assert sorted(EXTRA) == sorted(supported_model_types())


def test_model_types_are_unique():
    types = supported_model_types()
    assert len(types) == len(set(types))
    assert all(adapter_for(t) in ADAPTERS for t in types)


def test_unknown_model_type_names_the_supported_ones():
    with pytest.raises(InputError, match="unsupported architecture 'mamba'; supported: llama, mistral"):
        adapter_for("mamba")


def test_readme_lists_exactly_the_adapters():
    table = markdown_table()
    assert all(f"`{t}`" in table for t in supported_model_types())
    assert table in README.read_text(encoding="utf-8"), (
        "README.md's table of supported architectures is out of date: replace it with the output of "
        "python -c 'from transfer_neurons.adapters import markdown_table; print(markdown_table())'"
    )
