"""Architecture knowledge, in one place: one declarative adapter per architecture.

An adapter names where a causal LM keeps its decoder layers, MLP, down projection and any norm
applied to the MLP output before it joins the residual stream. Everything else (capture,
scoring, interventions) is written once against this description.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transfer_neurons.errors import InputError


@dataclass(frozen=True)
class Adapter:
    """Where one architecture keeps the parts the method needs (dotted attribute paths).

    layers: the decoder layer list, from the causal-LM object.
    final_norm: the norm applied after the last layer, from the causal-LM object.
    mlp: the MLP block, from a decoder layer.
    down_proj: the down projection, from the MLP block; its input is the activation `a`, its output
        (bias included) is what the MLP adds to the residual stream, up to `post_mlp_norm`.
    weight_in_out: the down projection's weight is stored [in, out] = [m, d] (transformers' Conv1D,
        GPT-2), so value vectors are its rows; otherwise [out, in] = [d, m] (nn.Linear), its columns.
    post_mlp_norm: an RMS norm applied to the MLP output inside the layer (Gemma-2/3, OLMo-2).
    norm_gain_offset: the RMS norms' gain is `weight + offset` (Gemma stores `gain - 1`), for the
        post-MLP norm and the final norm alike.
    in_projs: the MLP's input projections (gate and up, or the single input), from the MLP block;
        neuron i is output i of each (row i of an nn.Linear weight, column i of a Conv1D one).
    in_blocks: output blocks of width m stacked in each input projection (Phi-3's fused
        gate_up_proj: 2, neuron i is outputs i and m + i).
    mlp_kind, block: descriptions for the table of supported architectures; the method needs
        neither (`r = h - mlp` is right for sequential blocks and for parallel ones, where
        attention and MLP both read one norm of h^{l-1}).
    """

    name: str
    model_types: tuple[str, ...]
    layers: str = "model.layers"
    final_norm: str = "model.norm"
    mlp: str = "mlp"
    down_proj: str = "down_proj"
    weight_in_out: bool = False
    post_mlp_norm: str | None = None
    norm_gain_offset: float = 0.0
    in_projs: tuple[str, ...] = ("gate_proj", "up_proj")
    in_blocks: int = 1
    mlp_kind: str = "gated"
    block: str = "sequential"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return _get(model, self.layers)

    def final_norm_module(self, model: nn.Module) -> nn.Module:
        return _get(model, self.final_norm)

    def mlp_module(self, model: nn.Module, layer: int) -> nn.Module:
        return _get(self.decoder_layers(model)[layer], self.mlp)

    def down_module(self, model: nn.Module, layer: int) -> nn.Module:
        return _get(self.mlp_module(model, layer), self.down_proj)

    def in_modules(self, model: nn.Module, layer: int) -> list[nn.Module]:
        """The MLP's input projections of `layer` (what computes the activation `a` from the state)."""
        mlp = self.mlp_module(model, layer)
        return [_get(mlp, name) for name in self.in_projs]

    def post_norm_module(self, model: nn.Module, layer: int) -> nn.Module | None:
        if self.post_mlp_norm is None:
            return None
        return _get(self.decoder_layers(model)[layer], self.post_mlp_norm)

    def value_vectors(self, model: nn.Module, layer: int) -> torch.Tensor:
        """Value vectors `v_i` as rows, [m, d], in the weight's own dtype and device (a view, no copy)."""
        weight = module_weight(self.down_module(model, layer))
        return weight if self.weight_in_out else weight.t()

    def post_norm_gain(self, model: nn.Module, layer: int) -> torch.Tensor | None:
        """The post-MLP norm's per-dimension gain `g` [d] in float32, or None without such a norm."""
        norm = self.post_norm_module(model, layer)
        if norm is None:
            return None
        return module_weight(norm).float() + self.norm_gain_offset

    def final_norm_gain(self, model: nn.Module) -> torch.Tensor:
        """The final norm's per-dimension gain `g_final` [d] in float32 (what it multiplies the
        normalised state by; the unembedding reads `g_final * x / rms(x)`)."""
        return module_weight(self.final_norm_module(model)).float() + self.norm_gain_offset

    def post_norm_eps(self, model: nn.Module, layer: int) -> float:
        norm = self.post_norm_module(model, layer)
        return float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6)))


def module_weight(module: nn.Module) -> torch.Tensor:
    """A module's weight, also when accelerate offloaded it (device map with cpu/disk entries): then
    the module holds a meta tensor and the real one sits in its hook's weights map."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    if weight.device.type == "meta":
        maps = [h.weights_map for h in accelerate_hooks(module) if getattr(h, "weights_map", None) is not None]
        if not maps:
            raise InputError(
                f"the weight of {type(module).__name__} is on the meta device and this accelerate "
                f"({importlib.metadata.version('accelerate')}) keeps no offloaded copy where 0.30-1.x do "
                "(the module's `_hf_hook`); "
                "load the model without disk or cpu offload, or install the tested versions (make)"
            )
        weight = maps[0]["weight"]
    return weight.detach()


def accelerate_hooks(module: nn.Module) -> list:
    """The hooks accelerate attached to `module` for a device map (none without one). accelerate has
    no public accessor: `_hf_hook` is where every release since 0.x keeps them (the offload test
    checks it on the locked, newest and oldest installs)."""
    hook = getattr(module, "_hf_hook", None)
    return [] if hook is None else list(getattr(hook, "hooks", [hook]))  # a SequentialHook holds several


def _get(obj: object, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


_GEMMA_POST_NORM: dict[str, Any] = {"post_mlp_norm": "post_feedforward_layernorm", "norm_gain_offset": 1.0}
ADAPTERS: tuple[Adapter, ...] = (
    Adapter("Llama", ("llama",)),
    Adapter("Mistral", ("mistral",)),
    Adapter("Qwen2", ("qwen2",)),
    Adapter("Qwen3", ("qwen3",)),
    Adapter("Gemma", ("gemma",), norm_gain_offset=1.0),
    Adapter("Gemma-2", ("gemma2",), **_GEMMA_POST_NORM),
    Adapter("Gemma-3 (text)", ("gemma3_text",), **_GEMMA_POST_NORM),
    Adapter("OLMo-2, OLMo-3", ("olmo2", "olmo3"), post_mlp_norm="post_feedforward_layernorm"),
    Adapter("Phi-3", ("phi3",), in_projs=("gate_up_proj",), in_blocks=2, mlp_kind="gated, fused gate_up_proj"),
    Adapter("Cohere, Aya", ("cohere", "cohere2"), block="parallel"),
    Adapter(
        "GPT-NeoX (Pythia)",
        ("gpt_neox",),
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        down_proj="dense_4h_to_h",
        in_projs=("dense_h_to_4h",),
        mlp_kind="plain",
        block="parallel (`use_parallel_residual`)",
    ),
    Adapter(
        "BLOOM",
        ("bloom",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        down_proj="dense_4h_to_h",
        in_projs=("dense_h_to_4h",),
        mlp_kind="plain",
    ),
    Adapter(
        "GPT-2",
        ("gpt2",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        down_proj="c_proj",
        in_projs=("c_fc",),
        weight_in_out=True,
        mlp_kind="plain",
    ),
)


def supported_model_types() -> list[str]:
    return [t for a in ADAPTERS for t in a.model_types]


def adapter_for(model_type: str) -> Adapter:
    """The adapter for a transformers `config.model_type`, or an InputError naming the supported ones."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise InputError(f"unsupported architecture '{model_type}'; supported: {', '.join(supported_model_types())}")


def markdown_table() -> str:
    """The README's table of supported architectures, rendered from `ADAPTERS`."""
    rows = [
        "| adapter | transformers `model_type` | decoder layers | down projection | post-MLP norm | MLP | block |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in ADAPTERS:
        types = ", ".join(f"`{t}`" for t in a.model_types)
        down = f"`{a.mlp}.{a.down_proj}`" + (" (Conv1D, weight [m, d])" if a.weight_in_out else "")
        gain = "weight" + (f" + {a.norm_gain_offset:g}" if a.norm_gain_offset else "")
        norm = "-" if a.post_mlp_norm is None else f"`{a.post_mlp_norm}` (gain = {gain})"
        rows.append(f"| {a.name} | {types} | `{a.layers}` | {down} | {norm} | {a.mlp_kind} | {a.block} |")
    return "\n".join(rows) + "\n"
