"""Tiny random-weight models for tests, benchmarks and adapter checks (nothing downloaded).

The tokenizer is a byte-level BPE trained in-process on the shipped example sentences; it adds
a BOS token like real LLM tokenizers do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from transfer_neurons.data.examples import example_data

SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 256,
}
# per architecture: settings a small config needs besides SMALL (one entry per supported model_type)
_SLIDING = {"sliding_window": 4, "query_pre_attn_scalar": 8, "layer_types": ["sliding_attention", "full_attention"]}
EXTRA: dict[str, dict] = {
    "llama": {},
    "mistral": {"sliding_window": None},
    "qwen2": {},
    "qwen3": {},
    "gemma": {},
    "gemma2": _SLIDING,
    "gemma3_text": _SLIDING,
    "olmo2": {},
    "olmo3": {"sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]},
    "phi3": {},
    "cohere": {},
    "cohere2": {"sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"]},
    "gpt_neox": {"rotary_pct": 0.5},
    "bloom": {},  # MLP width is fixed at 4 * hidden_size (128)
    "gpt2": {},  # MLP width n_inner: set from intermediate_size below
}


def example_pairs(n: int = 200) -> list[dict]:
    """The first `n` shipped en-ja example pairs as dicts."""
    with open(example_data(), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh][:n]


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the example sentences, adding BOS like real LLMs."""
    rows = example_pairs()
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([r["en"] for r in rows] + [r["ja"] for r in rows], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def build_tiny_model(model_type: str, folder: str | Path, seed: int = 0, **sizes) -> Path:
    """Save a random-weight model of `model_type` (SMALL sizes unless overridden) and its tokenizer.

    Weights are drawn larger than the usual init and norm gains are random, so that every term
    of the method (norm gains, biases, activations) visibly matters in a comparison.
    """
    tokenizer = build_tokenizer()
    extra = dict(EXTRA[model_type])
    num_layers = sizes.get("num_hidden_layers", SMALL["num_hidden_layers"])
    if "layer_types" in extra:
        extra["layer_types"] = (extra["layer_types"] * num_layers)[:num_layers]
    settings = {**SMALL, **extra, **sizes}
    if model_type == "gpt2":
        settings.setdefault("n_inner", settings["intermediate_size"])
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2, pad_token_id=0, **settings
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3 if param.ndim == 1 else 0.15)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
