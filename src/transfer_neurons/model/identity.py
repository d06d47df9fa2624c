"""A model's identity for the activation store (docs/method.md section 10): what its captured states depend on.

The key hashes the architecture and config (its path and name left out: a moved or renamed folder
keeps its store), every parameter and buffer (name, shape, dtype, a float64 sum and a strided
sample of values: a change of any slice, such as a fine-tuning delta, changes the sum), and the
tokenizer (its full definition and the ids of a probe text, special tokens included).

The same key identifies the model of a neuron set (`model_identity`, recorded in neurons.json and
compared by every command that reads a set), with the dtype and an `architecture` key that leaves
the dtype out (the class, the config and the tokenizer).
"""

from __future__ import annotations

import hashlib
import json

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from transfer_neurons.artifacts.neurons import ModelIdentity

PROBE = "Hello, world! こんにちは 세계 Hallo wereld 123"
SAMPLES = 64  # values sampled per tensor


def weights_digest(model: PreTrainedModel) -> str:
    """sha256 over every named parameter and buffer's name, shape, dtype, float64 sum and a
    strided sample of its values."""
    digest = hashlib.sha256()
    tensors: dict[str, torch.Tensor] = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for name in sorted(tensors):
            value = tensors[name].detach()
            flat = value.reshape(-1)
            step = max(1, flat.numel() // SAMPLES)
            digest.update(f"{name}|{tuple(value.shape)}|{value.dtype}|".encode())
            digest.update(repr(float(flat.sum(dtype=torch.float64))).encode())
            digest.update(flat[::step][:SAMPLES].double().cpu().numpy().tobytes())
    return digest.hexdigest()


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the tokenizer's definition (fast tokenizers: their JSON; else the vocabulary) and
    of the ids it gives a probe text with special tokens."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # truncation and padding are call state (a call with truncation=True sets them)
        definition = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(definition, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer(PROBE, add_special_tokens=True)["input_ids"]).encode())
    return digest.hexdigest()


def _config_digest(model: PreTrainedModel, leave_out: tuple[str, ...] = ()) -> str:
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "name_or_path", "transformers_version", *leave_out):
        config.pop(volatile, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def model_key(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tokenizer_hash: str | None = None
) -> tuple[str, dict]:
    """The store key of a loaded model (24 hex digits) and the description it hashes (`tokenizer_hash`:
    the tokenizer's digest, when already computed)."""
    meta = {
        "class": type(model).__name__,
        "config": _config_digest(model),
        "weights": weights_digest(model),
        "tokenizer": tokenizer_hash or tokenizer_digest(tokenizer),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    return key, meta


def offloaded(model: PreTrainedModel) -> bool:
    """Whether some weights are offloaded to disk (meta tensors under accelerate): they cannot be hashed."""
    return any(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))


def model_identity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    key: str | None = None,
    tokenizer_hash: str | None = None,
) -> ModelIdentity | None:
    """The identity of a loaded model: its store key (`key` when known: for a fine-tuning delta
    applied, the key of the weights it was trained on), its dtype, and the key of its class, config
    (without the dtype) and tokenizer (`tokenizer_hash`: its digest, when known). None when weights
    are offloaded to disk."""
    if key is None and offloaded(model):
        return None
    tokenizer_hash = tokenizer_hash or tokenizer_digest(tokenizer)
    key = key or model_key(model, tokenizer, tokenizer_hash)[0]
    architecture = {
        "class": type(model).__name__,
        "config": _config_digest(model, ("dtype", "torch_dtype")),
        "tokenizer": tokenizer_hash,
    }
    digest = hashlib.sha256(json.dumps(architecture, sort_keys=True).encode()).hexdigest()[:24]
    return ModelIdentity(key, str(model.dtype).removeprefix("torch."), digest)
