"""Position policies during generation, against a reference that never uses a KV cache.

The reference decodes greedily by recomputing the whole left-padded sequence at every step, with
a hook written here that scales the first P (prompt) positions, or all of them: it needs no idea
of prefill or decoding, so it cannot share a mistake with the package's position tracking.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from transfer_neurons.hooks.generation import generate
from transfer_neurons.hooks.interventions import (
    Intervention,
    apply_intervention,
    random_baseline,
)
from transfer_neurons.hooks.positions import PositionError
from transfer_neurons.testing import EXTRA

PROMPTS = ["Would you like to dance with me?", "I can't.", "The cat sleeps on the warm mat today.", "Yes"]
NEW_TOKENS = 6


def strong_set(lm, factor: float) -> Intervention:
    """A quarter of every layer's neurons: enough that the policies lead to different text."""
    step = 4
    return Intervention.of([(l, i) for l in range(lm.num_layers) for i in range(0, lm.mlp_width, step)], factor)


@contextmanager
def next_token_logits(lm) -> Iterator[list[torch.Tensor]]:
    """The logits of the newest position of every forward pass made inside the block."""
    seen: list[torch.Tensor] = []
    head = lm.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, _args, out: seen.append(out[:, -1].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()


def reference(lm, prompts, rows: list[Intervention | None], policy: str, max_new_tokens: int = NEW_TOKENS):
    """Greedy continuations and the output-head values of each step [steps, rows, vocab] (before
    any logit scale or soft-capping the model applies after it), recomputing the full
    sequence each step (use_cache=False); each row's factors scale the prompt positions (`prompt`)
    or every position (`all`) of that row."""
    batch = lm.tokenizer(list(prompts), return_tensors="pt", padding=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    prompt_length = ids.shape[1]
    handles = []
    for layer in range(lm.num_layers):
        vectors = torch.stack([row.factors(layer, lm.mlp_width) if row else torch.ones(lm.mlp_width) for row in rows])

        def pre(_module, args, vectors=vectors):
            a = args[0].clone()
            stop = prompt_length if policy == "prompt" else a.shape[1]
            a[:, :stop] = a[:, :stop] * vectors[:, None, :]
            return (a, *args[1:])

        handles.append(lm.adapter.down_module(lm.model, layer).register_forward_pre_hook(pre))
    takes_positions = "position_ids" in inspect.signature(lm.model.forward).parameters
    try:
        with torch.no_grad(), next_token_logits(lm) as steps:
            for _ in range(max_new_tokens):
                extra = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if takes_positions else {}
                logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False, **extra).logits[:, -1]
                ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    finally:
        for handle in handles:
            handle.remove()
    texts = []
    eos = lm.tokenizer.eos_token_id
    for row in ids[:, prompt_length:].tolist():
        row = row[: row.index(eos) + 1] if eos in row else row
        texts.append(lm.tokenizer.decode(row, skip_special_tokens=True))
    return texts, torch.stack(steps), ids[:, prompt_length:]


def assert_same_steps(got: list[torch.Tensor], expected: torch.Tensor, tokens: torch.Tensor) -> None:
    """The logits of each generation step equal the reference's, for each row up to its first
    end-of-sequence token (after it the library feeds padding, the reference its own choice)."""
    assert len(got) == len(expected) or (len(got) < len(expected) and got), (len(got), len(expected))
    eos = None
    for step, logits in enumerate(got):
        alive = torch.ones(len(tokens), dtype=torch.bool) if eos is None else ~eos
        torch.testing.assert_close(logits[alive], expected[step][alive], atol=1e-4, rtol=1e-4)
        ended = tokens[:, step] == 2  # the tiny models' eos id
        eos = ended if eos is None else eos | ended


def generated(lm, prompts, applied):
    """The package's generate: texts and the logits of every pass."""
    with next_token_logits(lm) as seen:
        texts = generate(lm, prompts, applied, max_new_tokens=NEW_TOKENS, batch_size=len(prompts))
    return texts, seen


@pytest.mark.parametrize("model_type", sorted(EXTRA))
def test_generation_equals_the_no_cache_reference(tiny, model_type):
    """Every adapter, prompts of different lengths in one left-padded batch: `prompt` spares the
    generated tokens and `all` does not, exactly as the cache-free reference says."""
    lm = tiny(model_type)
    iv = strong_set(lm, 0.0)
    logits = {}
    for policy in ("prompt", "all"):
        applied = Intervention(iv.neurons, policy)
        texts, seen = generated(lm, PROMPTS, applied)
        expected_texts, expected, tokens = reference(lm, PROMPTS, [applied] * len(PROMPTS), policy)
        assert texts == expected_texts, policy
        assert_same_steps(seen, expected, tokens)
        logits[policy] = expected
    texts, seen = generated(lm, PROMPTS, None)
    expected_texts, expected, tokens = reference(lm, PROMPTS, [None] * len(PROMPTS), "all")
    assert texts == expected_texts
    assert_same_steps(seen, expected, tokens)
    assert (logits["prompt"][1] - logits["all"][1]).abs().max() > 1e-3, "degenerate: the policies agree"


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
@pytest.mark.parametrize("policy", ["prompt", "all"])
def test_per_row_generation_equals_the_no_cache_reference(tiny, model_type, policy):
    """The random baseline's draws, one per row of one batch, under both policies."""
    lm = tiny(model_type)
    controlled = Intervention(strong_set(lm, 0.0).neurons[::2], policy)
    draws = tuple(random_baseline(controlled, lm.mlp_width, seed=s) for s in range(3))
    per_unit = [draws[k % 3] for k in range(len(PROMPTS))]  # the per-row batching of a baseline's draws
    texts, seen = generated(lm, PROMPTS, per_unit)
    expected_texts, expected, tokens = reference(lm, PROMPTS, list(per_unit), policy)
    assert texts == expected_texts
    assert_same_steps(seen, expected, tokens)
    same_draw = reference(lm, PROMPTS, [per_unit[0]] * len(PROMPTS), policy)[1]
    assert (same_draw - expected).abs().max() > 1e-3, "degenerate: the draws agree"


def test_the_guard_stops_a_generation_with_unexpected_passes(tiny, monkeypatch):
    """A generation that makes one pass more than it generates tokens (what a library change could
    do) stops with a PositionError instead of reporting numbers made under another intervention."""
    lm = tiny("llama")
    model = lm.model
    original = model.generate

    def one_pass_more(*args, **kwargs):
        output = original(*args, **kwargs)
        model(input_ids=output[:, -1:], use_cache=False)  # a stray one-position pass
        return output

    monkeypatch.setattr(model, "generate", one_pass_more)
    with pytest.raises(PositionError, match="forward passes"):
        generate(lm, PROMPTS[:2], Intervention(strong_set(lm, 0.0).neurons, "prompt"), max_new_tokens=3)
    assert generate(lm, PROMPTS[:2], None, max_new_tokens=3)  # nothing to check without an intervention


def test_a_pass_the_tracker_cannot_place_is_an_error(tiny):
    """A chunked prefill (part of the prompt first) cannot be placed: an error, not a guess."""
    lm = tiny("llama")
    ids = lm.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    with (
        pytest.raises(PositionError, match="cannot tell prompt from generated"),
        apply_intervention(lm, Intervention(strong_set(lm, 0.0).neurons, "prompt"), ids.shape[1]),
        torch.no_grad(),
    ):
        lm.model(input_ids=ids[:, :3], use_cache=False)


@pytest.mark.parametrize("policy", ["prompt", "last"])
def test_library_generate_without_prompt_length_is_refused(tiny, policy):
    """Hugging Face's generate inside a plain apply_intervention: the one-position passes after the
    prompt look like decoding, which a plain block cannot place; it says how to do it instead."""
    lm = tiny("llama")
    batch = lm.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    with (
        pytest.raises(PositionError, match="transfer_neurons.generate"),
        apply_intervention(lm, Intervention(strong_set(lm, 0.0).neurons, policy)),
        torch.no_grad(),
    ):
        lm.model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
