"""The shared choices, one Enum each, used alike by the command line (typer) and configs (pydantic)."""

from __future__ import annotations

from enum import Enum


class NeuronType(str, Enum):
    """Type-1: L2 -> shared space (early layers); Type-2: shared -> L2 space (late layers)."""

    type1 = "type1"
    type2 = "type2"


class Positions(str, Enum):
    """Where an intervention scales activations: the last prompt token, every prompt position
    (prefill only), or every position including generated tokens."""

    last = "last"
    prompt = "prompt"
    all = "all"


class Baseline(str, Enum):
    """Random baseline placement: the same count per layer, or the same total uniformly over the
    candidate layers (the paper's choice)."""

    per_layer = "per-layer"
    uniform = "uniform"
