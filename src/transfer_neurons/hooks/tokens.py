"""Token-level values of the MLP, reduced per sentence as they stream (LAPE, AP, steering statistics).

The capture parts ``pos`` and ``median`` hook, in every requested layer, the output of the
activation function, ``act(x W_gate)`` for gated MLPs (the input of the elementwise product, not
the `a` that enters the down projection) and ``act(x W_in) = a`` for plain ones; the part ``asum``
hooks the down projection's input `a` itself (what interventions change; the per-language means of
docs/method.md section 4). Each keeps one reduction per sentence and neuron ([B, m]) instead of the
[B, T, m] values themselves: memory per batch is one layer's token values at a time plus what the
reductions keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from transfer_neurons.model.loading import LoadedModel

TokenReduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(values [B, T, m] float32, mask [B, T] bool: real, non-padding tokens) -> [B, m]."""

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


def down_input(lm: LoadedModel, layer: int) -> tuple[nn.Module, bool]:
    """The down projection of `layer`, whose input is the activation `a`."""
    return lm.adapter.down_module(lm.model, layer), True


@contextmanager
def token_hooks(
    lm: LoadedModel, layers: Iterable[int], parts: Sequence[str], mask: torch.Tensor, store: dict
) -> Iterator[None]:
    """Store ``REDUCTIONS[part](values, mask)`` per layer under ``store[part]`` for each token part
    in `parts` while active; the hooks are removed on exit."""
    handles = []
    for table, site in ((REDUCTIONS, activation_site), (DOWN_REDUCTIONS, down_input)):
        reductions = {part: table[part] for part in parts if part in table}
        if not reductions:
            continue
        sites = {layer: site(lm, layer) for layer in layers}
        if len({id(module) for module, _ in sites.values()}) < len(sites):
            raise RuntimeError("layers share one activation module: its outputs cannot be told apart")
        for layer, (module, is_input) in sites.items():

            def on_act(_m, args, out, layer=layer, is_input=is_input, reductions=reductions):
                values = (args[0] if is_input else out).to(mask.device).float()
                for part, reduce in reductions.items():
                    store.setdefault(part, {})[layer] = reduce(values, mask)

            handles.append(module.register_forward_hook(on_act))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def positive_counts(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sentence and neuron, the number of real token positions with a value > 0, [B, m]
    float32 (exact up to 2^24 tokens; LAPE)."""
    return ((values > 0) & mask[..., None]).sum(1).float()


def token_medians(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sentence and neuron, the median over the sentence's real tokens (the mean of the two
    middle values for an even count, as numpy's median), [B, m] float32 (AP's `on_p50` pooling).

    Two selections (`kthvalue`) per sentence over its [m, n] tokens: about 7x faster than sorting
    the padded [B, T, m] batch, which made the medians cost more than the forward pass."""
    medians = torch.empty(values.shape[0], values.shape[2], device=values.device)
    for row, (sentence, real) in enumerate(zip(values, mask, strict=True)):
        tokens = sentence[real].t().contiguous()  # [m, n]
        n = tokens.shape[1]
        low = tokens.kthvalue((n + 1) // 2, dim=1).values
        medians[row] = low if n % 2 else (low + tokens.kthvalue(n // 2 + 1, dim=1).values) / 2
    return medians


def token_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sentence and neuron, the sum over the sentence's real tokens, [B, m] float32."""
    return (values * mask[..., None]).sum(1)


REDUCTIONS: dict[str, TokenReduce] = {"pos": positive_counts, "median": token_medians}
"""The token parts of `hooks.capture` on the activation function's output: one [B, m] reduction
per sentence and layer."""
DOWN_REDUCTIONS: dict[str, TokenReduce] = {"asum": token_sums}
"""The token parts on the down projection's input `a`."""
TOKEN_PARTS = (*REDUCTIONS, *DOWN_REDUCTIONS)
