"""Neuron-set files (`neurons.json`): the one reader and writer every command and step uses.

A file holds the ranked neurons of one detection: ``{"schema_version", "method", "type", "lang",
"model", "model_identity", "layers", "top": [[layer, neuron, score], ...]}``. The reader validates
every entry (integer layer and neuron, finite score, no repeats) so that a bad file is a one-line
error, not a traceback or a silent wrong result.

`model_identity` says which model the neurons belong to (`ModelIdentity`: the activation store's
key of the model, computed in `model.identity`); every command that reads a set compares it with
the model it loaded (`NeuronSet.check_model`), whatever path or name the model was loaded by.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_neurons.artifacts.io import JOURNAL, read_json, write_json
from transfer_neurons.artifacts.names import CENTROIDS, MANIFEST, NEURONS, SCHEMA_VERSION, SCORES
from transfer_neurons.artifacts.result import read_manifest
from transfer_neurons.errors import InputError

Neuron = tuple[int, int]
Ranked = tuple[int, int, float]


@dataclass(frozen=True)
class ModelIdentity:
    """Which model an artifact belongs to, whatever path, hub id or built-in name it was loaded by:
    `key`, the activation store's key of the model (its config, weights, tokenizer and dtype; with a
    fine-tuning delta applied, that of the base model); `dtype`; `architecture`, a key of what does
    not depend on the dtype (the model class, the config and the tokenizer)."""

    key: str
    dtype: str
    architecture: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "dtype": self.dtype, "architecture": self.architecture}

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelIdentity | None:
        """The identity recorded in a file (None when it records none); InputError when malformed."""
        if data is None:
            return None
        fields = ("key", "dtype", "architecture")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k] for k in fields):
            raise InputError(f"{where}: 'model_identity' must hold the strings {', '.join(fields)}; rerun detect")
        return cls(data["key"], data["dtype"], data["architecture"])

    def same_model(self, other: ModelIdentity) -> bool | None:
        """True for the same model, False for another; None when it cannot be told: the same
        architecture and tokenizer loaded in another dtype, whose weights cannot be compared."""
        if self.key == other.key:
            return True
        if self.dtype != other.dtype and self.architecture == other.architecture:
            return None
        return False


@dataclass(frozen=True)
class NeuronSet:
    """Ranked neurons (layer, neuron, score), best first, with what produced them."""

    top: tuple[Ranked, ...]
    lang: str | None = None
    neuron_type: str | None = None  # "type1" / "type2" (`NeuronType`; "type" in the file), None for LAPE / AP
    model: str | None = None
    layers: tuple[int, ...] = ()  # the candidate layers the ranking was drawn from
    method: str = "tn"
    source: str | None = field(default=None, compare=False)  # the file it was read from
    identity: ModelIdentity | None = field(default=None, compare=False)  # the model detected on (None: not recorded)

    @property
    def type(self) -> str | None:
        """Deprecated: the older name of `neuron_type`."""
        warnings.warn("NeuronSet.type is deprecated; use NeuronSet.neuron_type", DeprecationWarning, stacklevel=2)
        return self.neuron_type

    @property
    def name(self) -> str:
        """A short label: `ja-type1`, `ja-type1-tn-centred` for another transfer-neuron score, or
        `ja-lape` for sets without a type."""
        if self.neuron_type is None:
            return f"{self.lang}-{self.method}"
        return f"{self.lang}-{self.neuron_type}" + ("" if self.method == "tn" else f"-{self.method}")

    def neurons(self, top_k: int | None = None) -> list[Neuron]:
        """The (layer, neuron) pairs of the top-k (all when None)."""
        return [(layer, neuron) for layer, neuron, _ in self.top[: top_k or len(self.top)]]

    def check_top_k(self, top_k: int, option: str = "--top-k") -> None:
        """InputError unless 1 <= top_k <= the number of listed neurons."""
        if not 1 <= top_k <= len(self.top):
            raise InputError(
                f"{option} {top_k} must be between 1 and the {len(self.top)} neurons listed in "
                f"{self.source or 'the neuron set'}"
            )

    def check_model(self, num_layers: int, width: int) -> None:
        """InputError if a neuron or candidate layer lies outside a model of this shape."""
        where = self.source or "the neuron set"
        for layer, neuron, _ in self.top:
            if not (0 <= layer < num_layers and 0 <= neuron < width):
                raise InputError(
                    f"neuron ({layer}, {neuron}) of {where} lies outside the model's {num_layers} layers "
                    f"x {width} neurons; was it detected on another model?"
                )
        if any(not 0 <= layer < num_layers for layer in self.layers):
            raise InputError(f"the candidate layers of {where} lie outside the model's {num_layers} layers")

    def check_identity(self, identity: ModelIdentity | None, name: str) -> str | None:
        """InputError if the set was detected on another model than the one of `identity` (loaded as
        `name`). Returns a warning when that cannot be told: a set file without an identity (written
        before sets recorded one), a model without one (weights offloaded to disk), or the same
        architecture in another dtype; the caller warns once the shape is checked too (`check_model`).
        A set made in Python without an identity is not compared."""
        where = f"neuron set '{self.source}'" if self.source else "the neuron set"
        if identity is not None and self.identity is not None:
            same = self.identity.same_model(identity)
            if same is False:
                raise InputError(
                    f"{where} belongs to model '{self.model}' (identity {self.identity.key}), not to '{name}' "
                    f"(identity {identity.key}); detect the neurons on this model"
                )
            if same is None:
                return (
                    f"{where} was detected in {self.identity.dtype} and '{name}' is loaded in {identity.dtype}: "
                    "only their architecture and tokenizer could be compared, not their weights"
                )
            return None
        if self.identity is None and self.source is None:
            return None  # a set made in Python, not an older file
        named = "" if self.model is None else f" (it names '{self.model}')"
        if self.identity is None:
            return (
                f"{where} records no model identity{named}: only its shape is checked against '{name}'; "
                "rerun detect to record it"
            )
        return (
            f"the identity of '{name}' is unknown (its weights are offloaded to disk): only the shape of "
            f"{where} is checked"
        )

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "type": self.neuron_type,
            "lang": self.lang,
            "model": self.model,
            "model_identity": None if self.identity is None else self.identity.to_json(),
            "layers": list(self.layers),
            "top": [list(t) for t in self.top],
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())


def read_neurons(path: str | Path) -> NeuronSet:
    """Read and validate a neuron-set file: a `neurons.json`, or a folder holding one (a detect folder,
    a study's `detect/<lang>/<type>` step, a `compare-methods` method folder)."""
    path = Path(path)
    if path.is_dir():
        inner = sorted(p.parent.relative_to(path).as_posix() for p in path.glob(f"*/{NEURONS}"))
        if not (path / NEURONS).is_file() and inner:
            raise InputError(
                f"folder '{path}' holds no {NEURONS}, but its sub-folders {', '.join(inner)} do; give one of them"
            )
        path = path / NEURONS
    where = f"neurons file '{path}'"
    if not path.is_file():
        if path.parent.is_dir() and not (path.parent / MANIFEST).is_file():
            _check_folder(path.parent)  # a detect rerun killed before it wrote neurons.json
        raise InputError(f"{where} does not exist; give a detect folder or the neurons.json written by detect")
    _check_folder(path.parent)
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} is not valid JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("top"), list):
        raise InputError(f"{where} has no 'top' list; give the neurons.json written by detect")
    if not data["top"]:
        raise InputError(f"{where} lists no neurons")
    top = tuple(_entry(entry, number, where) for number, entry in enumerate(data["top"]))
    if len({(layer, neuron) for layer, neuron, _ in top}) != len(top):
        raise InputError(f"{where} lists the same (layer, neuron) twice")
    layers = data.get("layers") or []
    if not isinstance(layers, list) or not all(_is_int(x) and x >= 0 for x in layers):
        raise InputError(f"{where}: 'layers' must be a list of layer indices")
    strings = {}
    for key in ("lang", "type", "model", "method"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}: '{key}' must be a string")
        strings[key] = value
    return NeuronSet(
        top,
        strings["lang"],
        strings["type"],
        strings["model"],
        tuple(int(x) for x in layers),
        strings["method"] or "tn",
        str(path),
        ModelIdentity.from_json(data.get("model_identity"), where),
    )


def _check_folder(folder: Path) -> None:
    """A neurons.json inside a result folder is trusted only when that folder is complete: its
    manifest lists it with the same digest (a detect rerun killed half-way leaves no manifest, and
    the journal of its unfinished write)."""
    if (folder / MANIFEST).is_file():
        read_manifest(folder)
    elif any((folder / name).is_file() for name in (SCORES, CENTROIDS, JOURNAL)):
        raise InputError(
            f"'{folder}' is an incomplete detect folder (no {MANIFEST}: the run that wrote it did not "
            "finish); rerun detect into it"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(entry: object, number: int, where: str) -> Ranked:
    if not (isinstance(entry, list) and len(entry) == 3):
        raise InputError(f"{where}: top entry {number} must be [layer, neuron, score]")
    layer, neuron, score = entry
    if not (_is_int(layer) and _is_int(neuron) and layer >= 0 and neuron >= 0):
        raise InputError(f"{where}: top entry {number} needs a non-negative integer layer and neuron, got {entry}")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise InputError(f"{where}: top entry {number} needs a finite number as score, got {score!r}")
    return int(layer), int(neuron), float(score)
