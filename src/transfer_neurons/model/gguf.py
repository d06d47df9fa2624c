"""GGUF files: dequantised and converted once into a transformers folder in the cache."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.artifacts.io import file_digest
from transfer_neurons.errors import InputError

STALE_AFTER_S = 3600  # a conversion folder untouched this long was left by a killed conversion


def convert_gguf(path: Path, progress: bool = False) -> Path:
    """Dequantise a GGUF file once into a cached transformers folder; return that folder."""
    target = cache_dir() / "models" / f"{path.stem}-{file_digest(path)[:16]}"
    if (target / "config.json").is_file():
        return target
    if progress:
        print(f"converting {path.name} once into {target} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_conversions(target.parent)
    folder, file = str(path.parent), path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, **dequantised())
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


def dequantised() -> dict[str, Any]:
    """`from_pretrained` options that load a GGUF file as plain float weights: transformers 5 keeps
    them quantised unless given `GgufConfig(dequantize=True)`; 4.x has no GgufConfig and always
    dequantises (both paths run in the tests: the locked install and `make test-oldest`)."""
    config = getattr(transformers, "GgufConfig", None)
    return {} if config is None else {"quantization_config": config(dequantize=True)}


def remove_stale_conversions(models: Path) -> None:
    """Remove the `.convert-*` folders that killed conversions left in the cache: those in which no
    file changed for STALE_AFTER_S (a running conversion writes its files within minutes)."""
    now = time.time()
    for folder in models.glob(".convert-*"):
        try:
            changed = max(p.stat().st_mtime for p in [folder, *folder.iterdir()])
        except OSError:  # removed meanwhile by another process
            continue
        if now - changed > STALE_AFTER_S:
            shutil.rmtree(folder, ignore_errors=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers errors run over many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
