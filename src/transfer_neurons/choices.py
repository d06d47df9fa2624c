"""The shared choices, one Enum each, used alike by the command line (typer) and configs (pydantic).

StrEnums: they print as their value in f-strings, paths, templates and JSON. A neuron type is called
`neuron_type` in Python ("type" in files and `--type` on the command line); `accepts_kind` keeps its
older keyword `kind=` working, with a DeprecationWarning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from enum import StrEnum
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


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


def accepts_kind(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` also taking `kind=`, the older name of its `neuron_type`, with a DeprecationWarning."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if "kind" in kwargs:
            if "neuron_type" in kwargs:
                raise TypeError(f"{fn.__name__}() got both neuron_type and its older name kind")
            message = f"{fn.__name__}(kind=...) is deprecated; use neuron_type=..."
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            kwargs["neuron_type"] = kwargs.pop("kind")
        return fn(*args, **kwargs)

    return wrapper
