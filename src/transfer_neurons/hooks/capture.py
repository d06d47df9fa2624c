"""Batched capture of last-token states with forward hooks.

Sentences are tokenised with the tokenizer's normal special tokens, sorted by length (less
padding), left-padded with an attention mask and explicit position ids (so a batched result
equals the unbatched one), and run through the decoder. Hooks keep only the last real token of
each sentence, in float32, per layer, all on the model's input device (`LoadedModel.device`) even
when a device map spreads the layers over several devices:

- ``h``: the decoder layer's output ``h^l`` (not ``output_hidden_states``);
- ``mlp``: what the MLP adds to the residual stream, ``mlp^l``: the down projection's output
  (bias included), after the post-MLP norm where the model has one;
- ``act``: the MLP activation ``a^l``, the input of the down projection;
- ``scale``: ``1 / rms(a W_down)`` of a post-MLP norm (1 where the model has none), so that the
  effective value vector of neuron i is ``scale * g * v_i``;
- ``final``: the final norm's output (only at the last layer; for ``--paper-compat``).

- ``pos`` and ``median``: every real token's activation-function output reduced per sentence
  (`hooks.tokens`: LAPE's positive counts, AP's medians), [B, m] per layer;
- ``asum``: the sum of `a` over the sentence's real tokens (per-language means for steering).

With an activation store on the model (`LoadedModel.store`, docs/method.md section 10) a capture without an
intervention reads the store instead: sentences it lacks are forwarded once (every layer, every
part of their group, `artifacts.store.GROUPS`) and added to it, then every requested sentence is
read from disk. Batches then come shard by shard rather than by length; every consumer places
rows by `Batch.index`. Under torch.distributed the store is not used (each rank holds a shard).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from transfer_neurons.artifacts.store import GROUPS, ActivationStore, group_of, text_key
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.distributed import world_size
from transfer_neurons.hooks.interventions import Applied, apply_intervention, rows_of
from transfer_neurons.hooks.tokens import TOKEN_PARTS, token_hooks
from transfer_neurons.model.loading import LoadedModel

PARTS = ("h", "mlp", "act", "scale", "final", *TOKEN_PARTS)


@dataclass
class Batch:
    """Captured last-token tensors of one batch: ``parts[name][layer]`` is [B, ...] float32."""

    index: torch.Tensor  # positions of the batch's sentences in the input list
    parts: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    lengths: torch.Tensor | None = None  # real (non-padding) tokens of each sentence

    def __getitem__(self, name: str) -> dict[int, torch.Tensor]:
        return self.parts[name]


class _StopForward(Exception):
    """Raised by the hook of the last needed layer: the rest of the forward pass is skipped."""


def _output(out):
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def hooks(lm: LoadedModel, layers: Iterable[int], parts: Sequence[str], store: dict, stop_after: int | None):
    """Register capture hooks for `layers`/`parts` writing into `store`; remove them on exit."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown capture parts {sorted(unknown)}; known: {PARTS}")
    adapter, model, device = lm.adapter, lm.model, lm.device
    handles = []

    def keep(name: str, layer: int, value: torch.Tensor) -> None:
        store.setdefault(name, {})[layer] = value[:, -1].to(device).float()

    for layer in layers:
        decoder_layer = adapter.decoder_layers(model)[layer]
        if "h" in parts or layer == stop_after:

            def on_layer(_m, _i, out, layer=layer):
                if "h" in parts:
                    keep("h", layer, _output(out))
                if layer == stop_after:
                    raise _StopForward

            handles.append(decoder_layer.register_forward_hook(on_layer))
        norm = adapter.post_norm_module(model, layer)
        eps = None if norm is None else adapter.post_norm_eps(model, layer)
        if {"act", "mlp", "scale"} & set(parts):

            def on_down(_m, args, out, layer=layer, eps=eps):
                if "act" in parts:
                    keep("act", layer, args[0])
                if "mlp" in parts and eps is None:
                    keep("mlp", layer, out)
                if "scale" in parts:
                    last = out[:, -1].to(device).float()
                    scale = torch.ones_like(last[:, 0]) if eps is None else torch.rsqrt(last.pow(2).mean(-1) + eps)
                    store.setdefault("scale", {})[layer] = scale

            handles.append(adapter.down_module(model, layer).register_forward_hook(on_down))
        if "mlp" in parts and norm is not None:
            handles.append(norm.register_forward_hook(lambda _m, _i, out, layer=layer: keep("mlp", layer, out)))
    if "final" in parts:
        final_norm = adapter.final_norm_module(model)
        last = lm.num_layers - 1
        handles.append(final_norm.register_forward_hook(lambda _m, _i, out: keep("final", last, out)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def context_length(lm: LoadedModel) -> int | None:
    """The most positions the model was built for (its config's max_position_embeddings or the
    like); None when the config does not say."""
    config = lm.model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(lm: LoadedModel, encoded: Sequence[Sequence[int]], reserve: int = 0, what: str = "input") -> None:
    """Refuse inputs longer than the model's context (`reserve`: positions still to generate):
    computing past it gives meaningless states, or exhausts memory, without a word."""
    limit = context_length(lm)
    if limit is None:
        return
    long = [k for k, ids in enumerate(encoded) if len(ids) + reserve > limit]
    if long:
        first = long[0]
        extra = f" + {reserve} to generate" if reserve else ""
        raise InputError(
            f"{len(long)} of {len(encoded)} {what}s exceed the model's context of {limit} positions "
            f"({what} {first + 1} has {len(encoded[first])} tokens{extra}); shorten or drop them"
        )


def capture(
    lm: LoadedModel,
    sentences: Sequence[str],
    parts: Sequence[str] = ("h",),
    layers: Iterable[int] | None = None,
    batch_size: int = 16,
    stop_early: bool = True,
    desc: str | None = None,
    progress: bool = False,
    intervention: Applied = None,
) -> Iterator[Batch]:
    """Yield one `Batch` per forward pass over `sentences` (sorted by length; see `Batch.index`),
    under `intervention` (a sequence: one per sentence, in input order), or read from the model's
    activation store when there is no intervention (see the module docstring).

    With `stop_early` the forward pass stops after the highest requested layer when nothing
    later (final norm) is needed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not sentences:  # e.g. an empty shard on one rank of a distributed run
        return
    layers = sorted(set(range(lm.num_layers) if layers is None else layers))
    if lm.store is not None and intervention is None and world_size() == 1:
        yield from _stored(lm, lm.store, sentences, parts, layers, batch_size, desc, progress)
        return
    yield from _forward(lm, sentences, parts, layers, batch_size, stop_early, desc, progress, intervention)


def _forward(
    lm: LoadedModel,
    sentences: Sequence[str],
    parts: Sequence[str],
    layers: list[int],
    batch_size: int,
    stop_early: bool,
    desc: str | None,
    progress: bool,
    intervention: Applied,
) -> Iterator[Batch]:
    """`capture` by forward passes."""
    stop_after = layers[-1] if stop_early and "final" not in parts and layers else None
    encoded = lm.tokenizer(list(sentences), add_special_tokens=True)["input_ids"]
    check_context(lm, encoded, what="sentence")
    order = sorted(range(len(encoded)), key=lambda k: (len(encoded[k]), k))
    decoder = lm.model.get_decoder()
    bar = tqdm(total=len(order), desc=desc, unit="sent", disable=not progress, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            padded = lm.tokenizer.pad({"input_ids": [encoded[k] for k in index]}, return_tensors="pt")
            mask = padded["attention_mask"].to(lm.device)
            store: dict = {}
            applied = apply_intervention(lm, rows_of(intervention, index))
            tokens_on = token_hooks(lm, layers, parts, mask.bool(), store)
            with applied, hooks(lm, layers, parts, store, stop_after), tokens_on, torch.inference_mode():
                try:
                    decoder(
                        input_ids=padded["input_ids"].to(lm.device),
                        attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                        use_cache=False,
                    )
                except _StopForward:
                    pass
            bar.update(len(index))
            yield Batch(index=torch.tensor(index), parts=store, lengths=mask.sum(-1))
    finally:
        bar.close()


def _stored(
    lm: LoadedModel,
    store: ActivationStore,
    sentences: Sequence[str],
    parts: Sequence[str],
    layers: list[int],
    batch_size: int,
    desc: str | None,
    progress: bool,
) -> Iterator[Batch]:
    """`capture` from the store: fill what it lacks (one pass for every group the store keeps),
    then read every sentence from disk."""
    group = group_of(parts)
    keys = [text_key(text) for text in sentences]
    groups = list(dict.fromkeys((group, *store.groups)))
    for name in groups:
        store.verify(name)
    missing = list(dict.fromkeys(key for name in groups for key in store.missing(keys, name)))
    if missing:
        text_of = dict(zip(keys, sentences, strict=True))
        _fill(lm, store, groups, [text_of[key] for key in missing], batch_size, desc, progress)
    device = lm.device
    for positions, tensors in store.read(keys, group, parts, layers, batch_size):
        batch = Batch(index=torch.tensor(positions), lengths=tensors["length"].to(device))
        for part in parts:
            value = tensors[part].to(device)
            if part == "final":
                batch.parts[part] = {lm.num_layers - 1: value}
            else:
                batch.parts[part] = {layer: value[:, k] for k, layer in enumerate(layers)}
        yield batch


def _fill(
    lm: LoadedModel,
    store: ActivationStore,
    groups: list[str],
    texts: list[str],
    batch_size: int,
    desc: str | None,
    progress: bool,
) -> None:
    """Forward `texts` once over every layer and add the parts of each of `groups` to the store,
    in shards of about `artifacts.store.SHARD_BYTES`."""
    parts = [part for group in groups for part in GROUPS[group]]
    every, last = list(range(lm.num_layers)), lm.num_layers - 1
    width = {"h": lm.hidden_size, "mlp": lm.hidden_size, "final": lm.hidden_size, "scale": 1}
    row_bytes = 4 * sum(width.get(part, lm.mlp_width) * (1 if part == "final" else lm.num_layers) for part in parts)
    per_shard = store.rows_per_shard(row_bytes)
    keys: list[str] = []
    rows: list[dict[str, torch.Tensor]] = []

    def flush() -> None:
        for group in groups:
            names = ("length", *GROUPS[group])
            store.write(group, keys, {name: torch.cat([row[name] for row in rows]) for name in names})

    for batch in _forward(lm, texts, parts, every, batch_size, False, f"{desc or 'states'} -> store", progress, None):
        assert batch.lengths is not None  # _forward always counts them
        keys += [text_key(texts[k]) for k in batch.index.tolist()]
        row = {"length": batch.lengths.cpu()}
        for part in parts:
            stacked = batch[part][last] if part == "final" else torch.stack([batch[part][k] for k in every], 1)
            row[part] = stacked.cpu()
        rows.append(row)
        if len(keys) >= per_shard:
            flush()
            keys, rows = [], []
    if keys:
        flush()


def collect(
    lm: LoadedModel,
    sentences: Sequence[str],
    parts: Sequence[str] = ("h",),
    layers: Iterable[int] | None = None,
    batch_size: int = 16,
    desc: str | None = None,
    progress: bool = False,
    intervention: Applied = None,
) -> dict[str, torch.Tensor]:
    """Captured tensors per part as [layers, sentences, dim] float32 in input order (on CPU).

    For analyses that need every sentence (kNN, PCA); detection streams instead.
    """
    layers = sorted(set(range(lm.num_layers) if layers is None else layers))
    out: dict[str, torch.Tensor] = {}
    batches = capture(lm, sentences, parts, layers, batch_size, desc=desc, progress=progress, intervention=intervention)
    for batch in batches:
        for part in parts:
            stacked = torch.stack([batch[part][layer] for layer in layers]).cpu()
            if part not in out:
                out[part] = torch.zeros(len(layers), len(sentences), *stacked.shape[2:])
            out[part][:, batch.index] = stacked
    return out
