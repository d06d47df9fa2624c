"""The shared choices, one Enum each, used alike by the command line (typer) and configs (pydantic).

StrEnums: they print as their value in f-strings, paths, templates and JSON."""

from __future__ import annotations

from enum import StrEnum


class NeuronType(StrEnum):
    """Type-1: L2 -> shared space (early layers); Type-2: shared -> L2 space (late layers)."""

    type1 = "type1"
    type2 = "type2"


class Positions(StrEnum):
    """Where an intervention scales activations: the last prompt token, every prompt position
    (prefill only), or every position including generated tokens."""

    last = "last"
    prompt = "prompt"
    all = "all"


class Baseline(StrEnum):
    """Random baseline placement: the same count per layer, or the same total uniformly over the
    candidate layers (the paper's choice)."""

    per_layer = "per-layer"
    uniform = "uniform"


class Method(StrEnum):
    """How `detect` ranks neurons: the transfer-neuron score raw (the paper's) or centred on a
    multilingual reference mean, or a language-specific-neuron method (LAPE, AP) for comparison."""

    tn = "tn"
    tn_centred = "tn-centred"
    lape = "lape"
    ap = "ap"
