"""GGUF files: dequantised and converted once into a transformers folder in the cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.artifacts.io import file_digest
from transfer_neurons.errors import InputError


def convert_gguf(path: Path, progress: bool = False) -> Path:
    """Dequantise a GGUF file once into a cached transformers folder; return that folder."""
    target = cache_dir() / "models" / f"{path.stem}-{file_digest(path)[:16]}"
    if (target / "config.json").is_file():
        return target
    if progress:
        print(f"converting {path.name} once into {target} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    folder, file = str(path.parent), path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=file, quantization_config=GgufConfig(dequantize=True)
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"could not convert GGUF file '{path}': {first_line(exc)}") from exc
    model.hf_quantizer = None  # type: ignore[assignment]  # saved as a plain (dequantised) model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers errors run over many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
