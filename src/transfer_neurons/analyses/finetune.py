"""Transfer-neuron-targeted fine-tuning (docs/method.md section 12): causal-LM training that changes only the
parameters of chosen neurons (for neuron (l, i): output i of layer l's MLP input projections, their
bias entries, and input i of its down projection), against baselines with as many trainable
parameters: random neurons of the same layers, LoRA on the MLPs of those layers (rank matched), or
every MLP weight of those layers (`full`). Before and after, on held-out data: perplexities,
alignment and QA (`finetune_eval`). The result is a delta (`model.delta`) that `--delta` applies."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config, seed_field
from transfer_neurons.analyses.finetune_eval import EvalSet, Measured, compare, measure
from transfer_neurons.analyses.finetune_train import (
    LoraTuning,
    NeuronTuning,
    Schedule,
    Tuning,
    encode,
    lora_rank_step,
    lora_targets,
    matched_rank,
    train,
)
from transfer_neurons.analyses.latent import check_pairs
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.codec import decode, hints
from transfer_neurons.artifacts.io import write_json
from transfer_neurons.artifacts.neurons import Neuron, NeuronSet
from transfer_neurons.artifacts.plots import save_figure
from transfer_neurons.artifacts.result import Result
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.interventions import Intervention, random_baseline
from transfer_neurons.metrics.perplexity import Change
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.model.delta import Delta, apply_delta, neuron_slices
from transfer_neurons.model.identity import model_key
from transfer_neurons.model.loading import LoadedModel


class FinetuneBaseline(StrEnum):
    """What is trained instead of the set's top-k neurons."""

    random = "random"  # as many random neurons in each layer (seeded, never in the set)
    lora = "lora"  # LoRA on the MLP projections of the set's layers, rank matched to the parameter count
    full = "full"  # every neuron of the set's layers


class FinetuneConfig(Config):
    """Settings of a fine-tuning run (the defaults of the `finetune` command)."""

    top_k: int = Field(100, ge=1, description="Train the top-k neurons of the set.")
    baseline: FinetuneBaseline | None = Field(
        None,
        description="Train instead: random (as many random neurons per layer), lora (LoRA on the MLPs of the set's "
        "layers, rank matched to the parameter count) or full (every neuron of those layers).",
    )
    steps: int = Field(200, ge=1, description="Optimizer steps.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (of the trained tensors only).")
    batch_size: int = Field(8, ge=1, description="Sentences per step (and per forward pass when measuring).")
    max_length: int = Field(128, ge=2, description="Tokens per sentence at most (longer ones are cut).")
    seed: int = seed_field("Seed of the batch order, the random baseline, LoRA's init and the bootstrap.")
    save_every: int = Field(50, ge=0, description="Checkpoint every this many steps (0: never).")
    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of every interval (0: no intervals).")
    qa: bool = Field(False, description="Also QA F1 where the built-in set covers the language (slow).")

    @property
    def method(self) -> str:
        return "neurons" if self.baseline is None else self.baseline.value

    def schedule(self) -> Schedule:
        return Schedule(self.steps, self.lr, self.batch_size, self.seed, self.weight_decay, self.save_every)


@dataclass
class FinetuneResult(Result):
    """A fine-tuning run: what was trained (`delta`, with its neurons), the parameter counts, the loss
    of every step, each measure before and after (`summary[condition][metric]`) with its change."""

    command: ClassVar[str] = "finetune"
    SUMMARY: ClassVar[str] = names.FINETUNE
    SETTINGS: ClassVar[tuple[str, ...]] = ("lang",)
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("delta",)

    model: str
    lang: str
    config: FinetuneConfig
    delta: Delta
    parameters: dict[str, int | None]  # trainable, target (the top-k neurons' count), lora_rank, lora_rank_step
    losses: list[float]
    summary: dict[str, dict[str, Estimate]]
    change: dict[str, Change]
    counts: dict[str, int]  # train sentences, eval sentences, eval pairs
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def write_files(self, out: Path) -> list[str]:
        layers = sorted({layer for layer, _ in self.delta.neurons})
        write_json(
            out / names.FINETUNE,
            {
                "schema_version": names.SCHEMA_VERSION,
                "model": self.model,
                "base_key": self.delta.base_key,
                "lang": self.lang,
                "method": self.delta.method,
                **self.config.model_dump(mode="json"),
                "layers": layers,
                "neurons": [list(n) for n in self.delta.neurons],
                "counts_per_layer": {str(l): sum(1 for at, _ in self.delta.neurons if at == l) for l in layers},
                "parameters": self.parameters,
                "counts": self.counts,
                "loss": self.losses,
                "measures": {
                    **{c: {m: e.to_json() for m, e in metrics.items()} for c, metrics in self.summary.items()},
                    "change": {m: c.to_json() for m, c in self.change.items()},
                },
                "notes": self.notes,
            },
        )
        plot_loss({self.delta.method: self.losses}, f"Fine-tuning loss ({self.lang})", out / names.LOSS_FIGURE)
        self.delta.save(out / names.DELTA)  # last before the manifest
        return [names.FINETUNE, names.LOSS_FIGURE, names.DELTA]

    @classmethod
    def summary_values(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The generic fields with the loss, the measures and their change from their own keys."""
        measures = dict(data["measures"])
        change, types = measures.pop("change"), hints(cls)
        return super().summary_values(data) | {
            "losses": data["loss"],
            "summary": decode(types["summary"], measures),
            "change": decode(types["change"], change),
        }

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        return {"delta": Delta.read(out)}

    def headline(self) -> dict[str, Any]:
        """What the study records of the step and `load_run` read: the method, the trainable
        parameters and each measure's change."""
        change = {metric: c.to_json() for metric, c in self.change.items()}
        return {"method": self.delta.method, "trainable": self.parameters["trainable"], "change": change}

    def summary_lines(self) -> list[str]:
        p, first, last = self.parameters, self.losses[0], float(np.mean(self.losses[-10:]))
        rank = "" if p["lora_rank"] is None else f", LoRA rank {p['lora_rank']} ({p['lora_rank_step']} per rank)"
        lines = [
            f"{self.delta.method}: {p['trainable']} trainable parameters (top-{self.config.top_k} neurons: "
            f"{p['target']}{rank}); {len(self.losses)} steps, loss {first:.3f} -> {last:.3f} (mean of the last 10)"
        ]
        for metric, change in self.change.items():
            before, after = self.summary["before"][metric], self.summary["after"][metric]
            lines.append(f"{metric:>14}: {before.text()} -> {after.text()}, change {change.text()}")
        return lines + [f"note: {note}" for note in self.notes]


def plot_loss(curves: dict[str, list[float]], title: str, path: Path) -> None:
    """Each run's training loss per step (faint) and its running mean over 10 steps (fewer in runs
    under 50 steps), one colour per run (`curves`: label -> loss of every step)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for number, (label, losses) in enumerate(curves.items()):
        colour = f"C{number}"
        steps = np.arange(1, len(losses) + 1)
        ax.plot(steps, losses, color=colour, alpha=0.25, linewidth=0.8)
        window = min(10, max(1, len(losses) // 5))  # short runs are drawn as they are
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        mean = f" (mean of {window} steps)" if window > 1 else ""
        ax.plot(steps[window - 1 :], smooth, color=colour, marker="o" if window == 1 else None, label=label + mean)
    ax.set_xlabel("step")
    ax.set_ylabel("mean token NLL")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def check_inputs(lm: LoadedModel, neurons: NeuronSet, config: FinetuneConfig, data: EvalSet) -> None:
    """InputError for a neuron set of another model or too short for --top-k, a model that already
    carries a delta or an activation store, too few eval pairs for mutual kNN, or a --max-length
    beyond the model's context."""
    lm.check_neurons(neurons)
    neurons.check_top_k(config.top_k)
    if lm.delta is not None or lm.store is not None:
        raise InputError("fine-tune the base model: load it without --delta and without an activation store")
    if data.pairs is not None:
        check_pairs(data.pairs, config.k)
    context = getattr(lm.model.config, "max_position_embeddings", None)
    if context is not None and config.max_length > context:
        raise InputError(f"--max-length {config.max_length} exceeds the model's context of {context} tokens")


def check_resume(checkpoint: Path | None, resume: bool) -> None:
    """InputError when asked to resume without a checkpoint file."""
    if resume and (checkpoint is None or not checkpoint.is_file()):
        raise InputError(f"no checkpoint '{checkpoint}' to resume from; run without --resume")


def chosen_neurons(lm: LoadedModel, neurons: NeuronSet, config: FinetuneConfig) -> list[Neuron]:
    """The neurons trained: the set's top-k, as many random ones per layer (never in the set; seeded),
    or every neuron of the top-k's layers (`full`, and the layers LoRA adapts)."""
    top = neurons.neurons(config.top_k)
    if config.baseline is FinetuneBaseline.random:
        return random_baseline(Intervention.of(top), lm.mlp_width, "per-layer", seed=config.seed).pairs()
    if config.baseline in (FinetuneBaseline.full, FinetuneBaseline.lora):
        layers = sorted({layer for layer, _ in top})
        return [(layer, i) for layer in layers for i in range(lm.mlp_width)]
    return sorted(top)


def slice_count(lm: LoadedModel, neurons: list[Neuron]) -> int:
    """Parameters in the slices of `neurons`."""
    params = dict(lm.model.named_parameters())
    return sum(
        params[name].numel() // params[name].shape[dim] * len(index)
        for name, (dim, index) in neuron_slices(lm.adapter, lm.model, neurons).items()
    )


def tuning_for(lm: LoadedModel, neurons: NeuronSet, config: FinetuneConfig) -> tuple[Tuning, dict[str, int | None]]:
    """What to train, and the parameter counts: trainable, target (the top-k neurons' slices) and, for
    LoRA, its rank (the count closest to the target) and the parameters per unit of rank."""
    target = slice_count(lm, sorted(neurons.neurons(config.top_k)))
    chosen = chosen_neurons(lm, neurons, config)
    if config.baseline is FinetuneBaseline.lora:
        layers = sorted({layer for layer, _ in chosen})
        targets = lora_targets(lm, layers)
        step = lora_rank_step(lm, targets)
        rank = matched_rank(target, step)
        torch.manual_seed(config.seed)  # LoRA's A matrices are drawn at random
        tuning: Tuning = LoraTuning(lm, targets, rank, sorted(neurons.neurons(config.top_k)))
        counts: dict[str, int | None] = {"lora_rank": rank, "lora_rank_step": step}
    else:
        tuning = NeuronTuning(lm, chosen, config.method)
        counts = {"lora_rank": None, "lora_rank_step": None}
    trainable = sum(t.numel() for t in tuning.trainable.values())
    return tuning, {"trainable": trainable, "target": target, **counts}


def fingerprint(base_key: str, config: FinetuneConfig, neurons: list[Neuron], rows: list[list[int]]) -> str:
    """What a checkpoint must match to be resumed: the base model, the training settings (not the
    step count or the measuring ones), the neurons and the training tokens."""
    kept = config.model_dump(
        mode="json", include={"top_k", "baseline", "lr", "weight_decay", "batch_size", "max_length", "seed"}
    )
    text = json.dumps([base_key, kept, neurons, rows], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run(
    lm: LoadedModel,
    neurons: NeuronSet,
    train_text: list[str],
    data: EvalSet,
    config: FinetuneConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = False,
    before: Measured | None = None,
) -> FinetuneResult:
    """Measure `lm` on `data`, train what `config` chooses on `train_text`, apply the delta (the model
    leaves with `lm.delta` set: `model.delta.remove_delta` restores it) and measure again. With
    `checkpoint` (a file), a checkpoint every `save_every` steps; `resume` continues from it.
    `before`: this base model's `finetune_eval.measure` on `data` with these settings, when already
    taken (a study measures it once for all the conditions of a language)."""
    check_inputs(lm, neurons, config, data)
    check_resume(checkpoint, resume)
    rows = encode(lm, train_text, config.max_length)
    if not rows:
        raise InputError("the training text holds no sentence of two or more tokens; give sentences to train on")
    start = time.perf_counter()
    base_key, _ = model_key(lm.model, lm.tokenizer)
    before = measure(lm, data, config, progress) if before is None else before
    measured = time.perf_counter()
    tuning, parameters = tuning_for(lm, neurons, config)
    losses = train(
        lm,
        tuning,
        rows,
        config.schedule(),
        checkpoint,
        resume,
        fingerprint(base_key, config, tuning.neurons, rows),
        on_step,
        progress,
    )
    delta = tuning.finish(base_key)
    apply_delta(lm, delta)
    trained = time.perf_counter()
    after = measure(lm, data, config, progress)
    summary, change = compare(before, after, config, lm.num_layers // 2)
    notes = []
    if data.pairs is None:
        notes.append("eval data is plain text: no English perplexity, no alignment")
    if config.qa and not data.questions:
        notes.append(f"QA skipped: the built-in set has no '{data.lang}' questions")
    return FinetuneResult(
        model=lm.name,
        lang=data.lang,
        config=config,
        delta=delta,
        parameters=parameters,
        losses=losses,
        summary=summary,
        change=change,
        counts={"train_sentences": len(rows), "eval_sentences": len(data.l2), "eval_pairs": len(data.pairs or [])},
        notes=notes,
        timings={
            "before": measured - start,
            "train": trained - measured,
            "after": time.perf_counter() - trained,
            "total": time.perf_counter() - start,
        },
    )
