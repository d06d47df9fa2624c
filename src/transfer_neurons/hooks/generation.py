"""Greedy generation in left-padded batches, optionally under an intervention; log-likelihoods of
given next tokens and of given continuations."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from transfer_neurons.hooks.capture import check_context
from transfer_neurons.hooks.interventions import Applied, apply_intervention, rows_of
from transfer_neurons.model.loading import LoadedModel


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    intervention: Applied = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    stop_strings: Sequence[str] | None = None,
    bar: EstimatingBar | None = None,
) -> list[str]:
    """Greedy continuations (the new text only) of `prompts`, in order.

    With `stop_strings`, a sequence stops once its text contains one of them (a batch stops when
    all of its sequences have); the stop string stays in the returned text. Under an intervention,
    the hooks follow the positions of each pass against the prompt length, and a generation whose
    passes do not add up (one for the prompt, one per further token) raises a PositionError.
    `bar` advances by each batch's prompts.
    """
    check_context(lm, lm.tokenizer(list(prompts))["input_ids"], reserve=max_new_tokens, what="prompt")
    stop = {"stop_strings": list(stop_strings), "tokenizer": lm.tokenizer} if stop_strings else {}
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = lm.tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True)
        batch = {key: encoded[key].to(lm.device) for key in ("input_ids", "attention_mask")}  # not token_type_ids
        applied = rows_of(intervention, range(start, start + len(batch["input_ids"])))
        prompt_length = batch["input_ids"].shape[1]
        with apply_intervention(lm, applied, prompt_length) as tracker, torch.inference_mode():
            output = lm.model.generate(  # type: ignore[operator]  # GenerationMixin, not in the stub
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
                **stop,
            )
        new = output[:, prompt_length:]
        if tracker is not None:  # the guard: one pass for the prompt and one per further token
            tracker.check_generation(new.shape[1])
        texts += lm.tokenizer.batch_decode(new, skip_special_tokens=True)
        if bar is not None:
            bar.update(len(new))
    return texts


def next_token_logprobs(
    lm: LoadedModel,
    prompts: Sequence[str],
    token_ids: Sequence[int],
    intervention: Applied = None,
    batch_size: int = 8,
    bar: EstimatingBar | None = None,
) -> torch.Tensor:
    """Log-probabilities [len(prompts), len(token_ids)] (float32, CPU) of `token_ids` as the next
    token after each prompt, in left-padded batches with explicit position ids (as in capture); a
    sequence of interventions gives one per prompt. `bar` advances by each batch's prompts."""
    check_context(lm, lm.tokenizer(list(prompts))["input_ids"], what="prompt")
    ids = torch.tensor(list(token_ids))
    keep = {"logits_to_keep": 1} if _keeps_logits(lm) else {}
    rows = []
    for start in range(0, len(prompts), batch_size):
        padded = lm.tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True)
        mask = padded["attention_mask"].to(lm.device)
        applied = rows_of(intervention, range(start, start + len(mask)))
        with apply_intervention(lm, applied), torch.inference_mode():
            logits = lm.model(
                input_ids=padded["input_ids"].to(lm.device),
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=False,
                **keep,
            ).logits[:, -1]
        rows.append(torch.log_softmax(logits.float(), dim=-1)[:, ids.to(logits.device)].cpu())
        if bar is not None:
            bar.update(len(mask))
    return torch.cat(rows) if rows else torch.zeros(0, len(ids))


class EstimatingBar(tqdm):
    """A bar over every prompt of a run (all its conditions) that, after the first batch, also says
    once on stderr what the whole run will take on this machine (the first batch's time scaled up),
    so a user learns early whether it takes minutes or hours; silent unless shown."""

    def __init__(self, runs: Mapping[str, Sequence[str]], desc: str, progress: bool) -> None:
        super().__init__(
            total=sum(map(len, runs.values())), desc=desc, unit="prompt", disable=not progress, leave=False
        )
        self.units, self.conditions = len(next(iter(runs.values()), [])), len(runs)
        self.started, self.said = time.perf_counter(), not progress

    def update(self, n: float | None = 1) -> bool | None:
        done = float(n or 0)
        if not self.said and self.total and done < self.total:
            seconds = time.perf_counter() - self.started
            plural = "s" * (self.conditions > 1)
            self.write(
                f"about {self.units} prompts x {self.conditions} condition{plural}; estimated "
                f"{duration(seconds * self.total / done)} on this machine (from the first batch of {done:g}: "
                f"{seconds:.1f} s)",
                file=sys.stderr,
            )
        self.said = True
        return super().update(n)


def duration(seconds: float) -> str:
    """'40 s', '3.5 min' or '2.1 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _keeps_logits(lm: LoadedModel) -> bool:
    """Whether the model's forward computes only the last positions' logits on request
    (`logits_to_keep`, transformers >= 4.50): far less memory with a large vocabulary."""
    return "logits_to_keep" in inspect.signature(lm.model.forward).parameters


def continuation_logliks(
    lm: LoadedModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 8
) -> list[float]:
    """Per (prompt, continuation), the mean log-probability of the continuation's tokens (tokenised
    on their own, no special tokens) after the prompt's (with them), under the model as it is; NaN
    for a continuation without tokens. Left-padded batches with explicit position ids; only the
    logits of the continuation positions are computed where the model allows it."""
    tokenizer = lm.tokenizer
    pairs = [
        (tokenizer(p)["input_ids"], tokenizer(c, add_special_tokens=False)["input_ids"])
        for p, c in zip(prompts, continuations, strict=True)
    ]
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (p, c) in enumerate(chunk):
            sequence = p + c
            ids[row, width - len(sequence) :] = torch.tensor(sequence)
            mask[row, width - len(sequence) :] = 1
        keep = max(len(c) for _, c in chunk) + 1  # the positions predicting a continuation token, and one
        with torch.inference_mode():
            logits = lm.model(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(lm.device),
                use_cache=False,
                **({"logits_to_keep": keep} if _keeps_logits(lm) else {}),
            ).logits[:, -keep:]
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = ids[:, width - keep + 1 :, None].to(logprobs.device)
        picked = logprobs.gather(-1, targets)[..., 0]  # [B, keep - 1]: the last keep - 1 tokens of each row
        for row, (_, c) in enumerate(chunk):
            out.append(float(picked[row, picked.shape[1] - len(c) :].mean()) if c else float("nan"))
    return out
