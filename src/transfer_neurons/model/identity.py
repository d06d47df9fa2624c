"""A model's identity for the activation store (DESIGN.md 3.11): what its captured states depend on.

The key hashes the architecture and config (its path and name left out: a moved or renamed folder
keeps its store), every parameter and buffer (name, shape, dtype, a float64 sum and a strided
sample of values: a change of any slice, such as a fine-tuning delta, changes the sum), and the
tokenizer (its full definition and the ids of a probe text, special tokens included).
"""

from __future__ import annotations

import hashlib
import json

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

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


def model_key(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[str, dict]:
    """The store key of a loaded model (24 hex digits) and the description it hashes."""
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "name_or_path", "transformers_version"):
        config.pop(volatile, None)
    meta = {
        "class": type(model).__name__,
        "config": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "weights": weights_digest(model),
        "tokenizer": tokenizer_digest(tokenizer),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]
    return key, meta
