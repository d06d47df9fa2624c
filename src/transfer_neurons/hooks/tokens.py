"""Token-level values of the MLP's activation function, reduced per batch as they stream (LAPE, AP).

`capture(..., tokens=reduce)` hooks, in every requested layer, the output of the activation
function, ``act(x W_gate)`` for gated MLPs (the input of the elementwise product, not the `a`
that enters the down projection) and ``act(x W_in) = a`` for plain ones, and stores
``reduce(values, mask)`` instead of the [B, T, m] values themselves: memory per batch is one
layer's token values at a time plus what `reduce` keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from transfer_neurons.model.loading import LoadedModel

TokenReduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(values [B, T, m] float32, mask [B, T] bool: real, non-padding tokens) -> a small tensor."""

ACTIVATION_NAMES = ("act_fn", "activation_fn")  # the gated MLPs' activation module (Llama, Gemma, ...; Phi-3)


def activation_site(lm: LoadedModel, layer: int) -> tuple[nn.Module, bool]:
    """The module that shows the activation function's output of `layer`'s MLP, and whether it is
    that module's input (plain MLPs: the down projection's input) rather than its output."""
    adapter, model = lm.adapter, lm.model
    if not adapter.mlp_kind.startswith("gated"):
        return adapter.down_module(model, layer), True
    mlp = adapter.mlp_module(model, layer)
    for name in ACTIVATION_NAMES:
        module = getattr(mlp, name, None)
        if isinstance(module, nn.Module):
            return module, False
    raise RuntimeError(f"{type(mlp).__name__} has no activation module ({', '.join(ACTIVATION_NAMES)})")


@contextmanager
def token_hooks(
    lm: LoadedModel, layers: Iterable[int], reduce: TokenReduce | None, mask: torch.Tensor, store: dict
) -> Iterator[None]:
    """Store ``reduce(values, mask)`` per layer under ``store["tokens"]`` while active (nothing when
    `reduce` is None); the hooks are removed on exit."""
    if reduce is None:
        yield
        return
    keep: TokenReduce = reduce
    sites = {layer: activation_site(lm, layer) for layer in layers}
    if len({id(module) for module, _ in sites.values()}) < len(sites):
        raise RuntimeError("layers share one activation module: its outputs cannot be told apart")
    handles = []
    for layer, (module, is_input) in sites.items():

        def on_act(_m, args, out, layer=layer, is_input=is_input):
            values = (args[0] if is_input else out).to(mask.device).float()
            store.setdefault("tokens", {})[layer] = keep(values, mask)

        handles.append(module.register_forward_hook(on_act))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def positive_counts(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per neuron, the number of real token positions with a value > 0, [m] float64 (LAPE)."""
    return ((values > 0) & mask[..., None]).sum((0, 1)).double()


def token_medians(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sentence and neuron, the median over the sentence's real tokens (the mean of the two
    middle values for an even count, as numpy's median), [B, m] float32 (AP's `on_p50` pooling)."""
    ordered = values.masked_fill(~mask[..., None], float("inf")).sort(dim=1).values  # padding sorts last
    count = mask.sum(1)
    middle = torch.stack([(count - 1) // 2, count // 2], 1)[..., None].expand(-1, -1, values.shape[-1])
    return ordered.gather(1, middle).mean(1)
