"""The training side of fine-tuning (docs/method.md section 12): what is trained (the slices of chosen neurons,
or LoRA matrices), the causal-LM loss over batches of sentences, and checkpoints for resuming.

Neuron slices are trained as small float32 leaf tensors of their own: each step the gradient of the
touched weight matrices is gathered into them, AdamW (state for these tensors only) updates them, and
they are scattered back into the weights, so nothing outside the slices ever changes. LoRA is peft's,
on the MLP projections of the chosen layers; at the end its matrices are taken out and the model
unwrapped, and the delta (A, B, merged on apply) is what the caller applies."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from tqdm.auto import tqdm

from transfer_neurons.artifacts.io import write_tensors
from transfer_neurons.artifacts.neurons import Neuron
from transfer_neurons.errors import InputError
from transfer_neurons.model.delta import Delta, LowRank, Slice, neuron_slices, slices_of, write_slices
from transfer_neurons.model.loading import LoadedModel

IGNORE = -100  # label of padding positions

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input ids, attention mask, labels [B, T]


def encode(lm: LoadedModel, sentences: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each sentence with the tokenizer's special tokens (BOS), cut at `max_length`;
    sentences with fewer than two tokens (nothing to predict) are left out. (Cut here, not by the
    tokenizer: its truncation setting would stick to it and change the model's store key.)"""
    ids = lm.tokenizer(list(sentences), add_special_tokens=True)["input_ids"]
    return [row[:max_length] for row in ids if len(row) >= 2]


def collate(rows: Sequence[list[int]], pad_id: int, device: torch.device) -> Batch:
    """Right-padded input ids, attention mask and labels (padding: IGNORE): positions stay 0, 1, ..."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = torch.tensor(row)
        mask[k, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE)
    return ids.to(device), mask.to(device), labels.to(device)


def token_nll(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Each row's summed next-token negative log-likelihood [B] (float32; padding excluded)."""
    ids, mask, labels = batch
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    nll = nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return nll.sum(1)


def sentence_nll(
    lm: LoadedModel, rows: Sequence[list[int]], batch_size: int, desc: str = "perplexity", progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Summed NLL [n] and predicted tokens [n] of each encoded sentence, without gradients."""
    if not rows:
        raise InputError("the held-out text holds no sentence of two or more tokens; give sentences to measure")
    sums = []
    with torch.no_grad():
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", disable=not progress):
            batch = collate(rows[start : start + batch_size], _pad_id(lm), lm.device)
            sums.append(token_nll(lm.model, batch).double().cpu())
    return torch.cat(sums).numpy(), np.array([len(row) - 1 for row in rows], dtype=np.float64)


def _pad_id(lm: LoadedModel) -> int:
    pad = lm.tokenizer.pad_token_id
    assert isinstance(pad, int)
    return pad


def batch_at(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The sentence indices of training step `step` (0-based): consecutive slices of a seeded
    permutation per epoch, a function of the step alone, so a resumed run sees the same batches."""
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(step * batch_size + len(out), n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        out += order[offset : offset + batch_size - len(out)].tolist()
    return out


class NeuronTuning:
    """Trains the slices of `neurons` (`model.delta.neuron_slices`) as float32 leaves of their own."""

    def __init__(self, lm: LoadedModel, neurons: list[Neuron], method: str) -> None:
        self.lm, self.neurons, self.method = lm, neurons, method
        self.spec = neuron_slices(lm.adapter, lm.model, neurons)
        self.params = dict(lm.model.named_parameters())
        lm.model.requires_grad_(False)
        for name in self.spec:
            self.params[name].requires_grad_(True)
        self.originals = slices_of(lm.model, self.spec)  # the base values, restored by `finish`
        self.leaves = {
            name: self.params[name].detach().index_select(dim, index.to(lm.device)).float().clone().requires_grad_(True)
            for name, (dim, index) in self.spec.items()
        }

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.leaves

    def after_backward(self) -> None:
        """Move the gradient of the chosen slices into the leaves; drop the weights' full gradients."""
        for name, leaf in self.leaves.items():
            param, (dim, index) = self.params[name], self.spec[name]
            assert param.grad is not None
            leaf.grad = param.grad.index_select(dim, index.to(param.device)).float()
            param.grad = None

    def write(self) -> None:
        """Scatter the leaves into the model's weights (in the weights' dtype)."""
        write_slices(
            self.lm.model, {name: Slice(*self.spec[name], leaf.detach()) for name, leaf in self.leaves.items()}
        )

    def finish(self, base_key: str) -> Delta:
        """The delta of the trained slices; the model's weights are the base ones again."""
        slices = {
            name: Slice(dim, index, leaf.detach().to(self.params[name].dtype).cpu())
            for (name, leaf), (dim, index) in zip(self.leaves.items(), self.spec.values(), strict=True)
        }
        write_slices(self.lm.model, self.originals)
        self.lm.model.requires_grad_(False)
        return Delta(base_key, self.lm.name, self.method, self.neurons, slices=slices)


def lora_targets(lm: LoadedModel, layers: Sequence[int]) -> list[str]:
    """The module names of the MLP projections (inputs and down) of `layers`."""
    names = {module: name for name, module in lm.model.named_modules()}
    modules = [
        m
        for layer in layers
        for m in (*lm.adapter.in_modules(lm.model, layer), lm.adapter.down_module(lm.model, layer))
    ]
    return [names[m] for m in modules]


def lora_rank_step(lm: LoadedModel, targets: Sequence[str]) -> int:
    """LoRA parameters per unit of rank on `targets`: the sum of each matrix's in + out size."""
    modules = dict(lm.model.named_modules())
    return sum(sum(modules[name].weight.shape) for name in targets)


def matched_rank(target: int, step: int) -> int:
    """The LoRA rank whose parameter count `rank * step` is closest to `target` (at least 1)."""
    return max(1, round(target / step))


class LoraTuning:
    """peft's LoRA (dropout 0, alpha = rank: scaling 1) on the MLP projections `targets`."""

    def __init__(self, lm: LoadedModel, targets: list[str], rank: int, neurons: list[Neuron]) -> None:
        from peft import LoraConfig, get_peft_model

        self.lm, self.targets, self.neurons = lm, targets, neurons
        lm.model.requires_grad_(False)
        config = LoraConfig(
            r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, fan_in_fan_out=lm.adapter.weight_in_out
        )
        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            self.peft = get_peft_model(lm.model, config)  # wraps the modules of lm.model in place
        self.leaves: dict[str, torch.Tensor] = {n: p for n, p in self.peft.named_parameters() if p.requires_grad}

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.leaves

    def after_backward(self) -> None:
        """Nothing to do: peft's matrices are the optimizer's tensors."""

    def write(self) -> None:
        """Nothing to do: the model reads peft's matrices directly."""

    def finish(self, base_key: str) -> Delta:
        """The delta of the trained matrices (A, B, scaling per weight); the model is unwrapped: its
        weights are the base ones again."""
        modules = dict(self.lm.model.named_modules())
        low_rank = {}
        for name in self.targets:
            module = modules[name]
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            scaling = float(module.scaling["default"])
            low_rank[f"{name}.weight"] = LowRank(
                a.detach().cpu().clone(), b.detach().cpu().clone(), scaling, self.lm.adapter.weight_in_out
            )
        self.peft.unload()
        self.lm.model.requires_grad_(False)
        return Delta(base_key, self.lm.name, "lora", self.neurons, low_rank=low_rank)


Tuning = NeuronTuning | LoraTuning


@dataclass(frozen=True)
class Schedule:
    """How to train: steps, AdamW's learning rate and weight decay, sentences per batch, the seed
    of the batch order, and a checkpoint every `save_every` steps (0: none)."""

    steps: int
    lr: float
    batch_size: int
    seed: int = 0
    weight_decay: float = 0.0
    save_every: int = 0


@dataclass
class Progress:
    """Where training stands: the next step and each finished step's mean token loss."""

    step: int = 0
    losses: list[float] = field(default_factory=list)


def save_checkpoint(
    path: Path, tuning: Tuning, optimizer: torch.optim.Optimizer, progress: Progress, fingerprint: str
) -> None:
    """One safetensors file, written atomically: the trainable tensors (`param:<name>`), AdamW's state
    of each (`adam:<key>:<name>`), the torch RNG state; step, losses and the run's fingerprint as JSON
    in its metadata (no pickle)."""
    tensors = {f"param:{name}": leaf.detach().cpu() for name, leaf in tuning.trainable.items()}
    for name, leaf in tuning.trainable.items():
        for key, value in optimizer.state.get(leaf, {}).items():
            tensors[f"adam:{key}:{name}"] = torch.as_tensor(value).detach().cpu()
    tensors["rng:torch"] = torch.get_rng_state()
    meta = {"step": progress.step, "losses": progress.losses, "fingerprint": fingerprint}
    write_tensors(path, tensors, {"state": json.dumps(meta)})


def load_checkpoint(path: Path, tuning: Tuning, optimizer: torch.optim.Optimizer, fingerprint: str) -> Progress:
    """Restore what `save_checkpoint` wrote into `tuning` (and the model) and `optimizer`; InputError
    when it is damaged or belongs to another run (other settings, neurons, data or model)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"checkpoint '{path}' is damaged; run without --resume") from exc
    if meta.get("fingerprint") != fingerprint:
        raise InputError(
            f"checkpoint '{path}' is of another run (settings, neurons, data or model differ); run without --resume"
        )
    index = {name: k for k, name in enumerate(tuning.trainable)}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(":")
        if kind == "adam":
            part, _, name = rest.partition(":")
            state.setdefault(index[name], {})[part] = value
    with torch.no_grad():
        for name, leaf in tuning.trainable.items():
            leaf.copy_(tensors[f"param:{name}"])
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng:torch"])
    tuning.write()
    return Progress(int(meta["step"]), [float(x) for x in meta["losses"]])


def train(
    lm: LoadedModel,
    tuning: Tuning,
    rows: Sequence[list[int]],
    schedule: Schedule,
    checkpoint: Path | None = None,
    resume: bool = False,
    fingerprint: str = "",
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> list[float]:
    """Train `tuning` for `schedule.steps` AdamW steps on batches of `rows` (`batch_at`); the loss is
    the mean next-token NLL of the batch. With `checkpoint`, saved every `schedule.save_every` steps;
    `resume` continues from it. `on_step(step, loss)` runs after each step (and its checkpoint).
    Returns every step's loss."""
    optimizer = torch.optim.AdamW(list(tuning.trainable.values()), lr=schedule.lr, weight_decay=schedule.weight_decay)
    done = Progress()
    if resume:
        assert checkpoint is not None
        done = load_checkpoint(checkpoint, tuning, optimizer, fingerprint)
    losses = list(done.losses)
    bar = tqdm(total=schedule.steps, initial=done.step, desc="training", disable=not progress)
    for step in range(done.step, schedule.steps):
        picked = batch_at(len(rows), schedule.batch_size, schedule.seed, step)
        batch = collate([rows[i] for i in picked], _pad_id(lm), lm.device)
        loss = token_nll(lm.model, batch).sum() / (batch[2][:, 1:] != IGNORE).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tuning.after_backward()
        optimizer.step()
        tuning.write()
        losses.append(float(loss.detach()))
        if checkpoint is not None and schedule.save_every and (step + 1) % schedule.save_every == 0:
            save_checkpoint(checkpoint, tuning, optimizer, Progress(step + 1, losses), fingerprint)
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(step, losses[-1])
    bar.close()
    return losses
