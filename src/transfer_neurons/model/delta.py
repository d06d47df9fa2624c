"""Fine-tuning deltas (docs/method.md section 12): the changed parameters of a model, applied to or removed from
the base model it was trained on.

A delta holds either *slices* (for each changed parameter, the new values of some rows or columns:
neuron-targeted fine-tuning changes row i of the MLP's input projections and column i of its down
projection for each trained neuron (l, i)) or *low-rank updates* (LoRA: `W + scaling * B @ A` of whole
matrices, stored as A and B and merged on apply). It records the store key (`identity.model_key`) of
the base model, and applying it to any other model is an InputError.

Applying keeps the overwritten values in memory, so `remove_delta` restores the base model bit for
bit; reloading the model without the delta does the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer_neurons.artifacts.io import file_digest, write_tensors
from transfer_neurons.artifacts.names import DELTA, FINETUNE, MANIFEST
from transfer_neurons.artifacts.neurons import Neuron
from transfer_neurons.artifacts.result import read_manifest
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import Adapter, module_weight
from transfer_neurons.model.identity import model_key

MARK = "transfer_neurons"  # the metadata entry that marks a delta file: {MARK: "delta"}


@dataclass(frozen=True)
class Slice:
    """New values of some indices of one parameter along `dim` (values: the parameter's `index_select`)."""

    dim: int
    index: torch.Tensor  # int64 [k]
    values: torch.Tensor


@dataclass(frozen=True)
class LowRank:
    """A low-rank update `scaling * B @ A` ([out, in]) of a weight; `transposed`: the weight is stored
    [in, out] (transformers' Conv1D), so the update is added transposed."""

    a: torch.Tensor  # [r, in]
    b: torch.Tensor  # [out, r]
    scaling: float
    transposed: bool = False

    def update(self) -> torch.Tensor:
        """The weight update in float32, in the weight's own layout."""
        product = (self.b.float() @ self.a.float()) * self.scaling
        return product.t() if self.transposed else product


@dataclass
class Delta:
    """What fine-tuning changed (by parameter name), the base model's key and name, how it was trained
    (`method`: neurons, random, full or lora) and the neurons it names (for lora: those whose layers
    it adapted)."""

    base_key: str
    base_model: str
    method: str
    neurons: list[Neuron]
    slices: dict[str, Slice] = field(default_factory=dict)
    low_rank: dict[str, LowRank] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        """Values stored: slice entries, or A and B entries."""
        return sum(s.values.numel() for s in self.slices.values()) + sum(
            u.a.numel() + u.b.numel() for u in self.low_rank.values()
        )

    def save(self, path: str | Path) -> None:
        """One safetensors file (written atomically): tensors `<param>` and `<param>:index` for slices,
        `<param>:lora_a` / `<param>:lora_b` for low-rank updates; the rest as JSON in its metadata."""
        tensors: dict[str, torch.Tensor] = {}
        for name, s in self.slices.items():
            tensors[name], tensors[f"{name}:index"] = s.values, s.index
        for name, u in self.low_rank.items():
            tensors[f"{name}:lora_a"], tensors[f"{name}:lora_b"] = u.a, u.b
        header = {
            "base_key": self.base_key,
            "base_model": self.base_model,
            "method": self.method,
            "neurons": [list(n) for n in self.neurons],
            "dims": {name: s.dim for name, s in self.slices.items()},
            "low_rank": {name: [u.scaling, u.transposed] for name, u in self.low_rank.items()},
        }
        write_tensors(path, {k: v.detach().cpu() for k, v in tensors.items()}, {MARK: "delta", **_encode(header)})

    @classmethod
    def read(cls, path: str | Path) -> Delta:
        """The delta of a finetune folder or of its `delta.safetensors` file. A finetune folder must be
        complete (its manifest lists the file with the same digest: a killed run has none); a delta
        file on its own is read as it is."""
        path = _delta_file(Path(path))
        if not path.is_file():
            raise InputError(f"delta '{path}' does not exist; give the folder written by finetune")
        if (path.parent / MANIFEST).is_file() or (path.parent / FINETUNE).is_file():
            read_manifest(path.parent, "finetune")  # a finetune folder: complete, and the file unchanged
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        except (SafetensorError, OSError) as exc:
            raise InputError(f"delta '{path}' is not a readable safetensors file; rerun finetune") from exc
        if meta.get(MARK) != "delta":
            raise InputError(f"'{path}' is not a delta written by finetune")
        try:
            header = {key: json.loads(value) for key, value in meta.items() if key != MARK}
            return cls(
                base_key=header["base_key"],
                base_model=header["base_model"],
                method=header["method"],
                neurons=[(int(l), int(i)) for l, i in header["neurons"]],
                slices={
                    name: Slice(int(dim), tensors[f"{name}:index"], tensors[name])
                    for name, dim in header["dims"].items()
                },
                low_rank={
                    name: LowRank(tensors[f"{name}:lora_a"], tensors[f"{name}:lora_b"], float(scale), bool(flip))
                    for name, (scale, flip) in header["low_rank"].items()
                },
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"delta '{path}' is damaged ({type(exc).__name__}: {exc}); rerun finetune") from exc


def _encode(header: dict[str, Any]) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in header.items()}


class Tunable(Protocol):
    """What a delta is applied to (a `LoadedModel`)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    delta: AppliedDelta | None
    store: Any


@dataclass
class AppliedDelta:
    """A delta applied to a loaded model: where it came from and the values it overwrote."""

    delta: Delta
    source: str | None
    sha256: str | None
    originals: dict[str, Slice | torch.Tensor] = field(repr=False)

    def inputs(self) -> dict[str, dict[str, str]]:
        """The manifest entry of the delta (path and sha256), empty for one applied from memory."""
        if self.source is None or self.sha256 is None:
            return {}
        return {"delta": {"path": self.source, "sha256": self.sha256}}


def neuron_slices(adapter: Adapter, model: nn.Module, neurons: list[Neuron]) -> dict[str, tuple[int, torch.Tensor]]:
    """The parameters of `neurons` as (dim, sorted indices) per parameter name: for neuron (l, i) output
    i of each input projection of layer l (of each stacked block; its bias entries too) and input i of
    the down projection (its bias belongs to no neuron)."""
    names = {module: name for name, module in model.named_modules()}
    by_layer: dict[int, list[int]] = {}
    for layer, neuron in neurons:
        by_layer.setdefault(layer, []).append(neuron)
    out: dict[str, tuple[int, torch.Tensor]] = {}
    in_dim, down_dim = (1, 0) if adapter.weight_in_out else (0, 1)
    for layer, chosen in sorted(by_layer.items()):
        index = torch.tensor(sorted(chosen), dtype=torch.long)
        for module in adapter.in_modules(model, layer):
            width = module_weight(module).shape[in_dim] // adapter.in_blocks
            blocks = torch.cat([index + b * width for b in range(adapter.in_blocks)])
            out[f"{names[module]}.weight"] = (in_dim, blocks)
            if getattr(module, "bias", None) is not None:
                out[f"{names[module]}.bias"] = (0, blocks)
        out[f"{names[adapter.down_module(model, layer)]}.weight"] = (down_dim, index)
    return out


def slices_of(model: nn.Module, spec: dict[str, tuple[int, torch.Tensor]]) -> dict[str, Slice]:
    """The current values of the slices `spec` (as `neuron_slices` gives them), copied."""
    params = dict(model.named_parameters())
    out = {}
    for name, (dim, index) in spec.items():
        param = params[name]
        out[name] = Slice(dim, index, param.detach().index_select(dim, index.to(param.device)).cpu().clone())
    return out


def write_slices(model: nn.Module, slices: dict[str, Slice]) -> None:
    """Write each slice's values into its parameter (in the parameter's device and dtype)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, s in slices.items():
            param = params[name]
            param.index_copy_(s.dim, s.index.to(param.device), s.values.to(param.device, param.dtype))


def apply_delta(lm: Tunable, delta: Delta, source: str | Path | None = None) -> AppliedDelta:
    """Write `delta` into `lm`'s weights (InputError unless `lm` is the base model it was trained on,
    or when it already carries a delta); the overwritten values are kept for `remove_delta`."""
    if lm.delta is not None:
        raise InputError("the model already carries a delta; remove it first (remove_delta) or reload the model")
    where = "the delta" if source is None else f"delta '{source}'"
    key, _ = model_key(lm.model, lm.tokenizer)
    if key != delta.base_key:
        raise InputError(
            f"{where} was trained on another model (base key {delta.base_key}, this model {key}); load the "
            f"model it was trained on ({delta.base_model}), in the same dtype"
        )
    params = dict(lm.model.named_parameters())
    missing = sorted((set(delta.slices) | set(delta.low_rank)) - set(params))
    if missing:
        raise InputError(f"{where} names parameters this model lacks ({missing[0]}, ...)")
    originals: dict[str, Slice | torch.Tensor] = {
        **slices_of(lm.model, {name: (s.dim, s.index) for name, s in delta.slices.items()})
    }
    write_slices(lm.model, delta.slices)
    with torch.no_grad():
        for name, u in delta.low_rank.items():
            param = params[name]
            originals[name] = param.detach().clone()
            param.copy_((param.float() + u.update().to(param.device)).to(param.dtype))
    path = None if source is None else _delta_file(Path(source))
    digest = None if path is None else file_digest(path)
    lm.delta = AppliedDelta(delta, None if path is None else str(path), digest, originals)
    return lm.delta


def _delta_file(source: Path) -> Path:
    return source / DELTA if source.is_dir() else source


def remove_delta(lm: Tunable) -> None:
    """Restore the values the applied delta overwrote: the base model again, bit for bit. Refused while
    an activation store is attached (its states are those of the model with the delta)."""
    if lm.delta is None:
        return
    if lm.store is not None:
        raise InputError("an activation store keyed on the fine-tuned model is attached; reload the model instead")
    originals = lm.delta.originals
    write_slices(lm.model, {name: o for name, o in originals.items() if isinstance(o, Slice)})
    params = dict(lm.model.named_parameters())
    with torch.no_grad():
        for name, original in originals.items():
            if not isinstance(original, Slice):
                params[name].copy_(original)
    lm.delta = None
