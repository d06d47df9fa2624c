"""lm-evaluation-harness integration: run any harness task under a neuron intervention.

lm-eval's own `steered` model (PyPI 0.4.x) knows only the `add` and `clamp` actions, which cannot
scale a set of neurons. Importing this module registers a harness model named
`transfer-neurons` that reads the files written by `transfer-neurons export-steering` (the
`multiply` format of the Transfer Neurons authors' harness fork: a [1, m] factor vector per
hookpoint `layers.{l}.mlp.act_fn`) and multiplies those outputs at every position:

    transfer-neurons harness run --model transfer-neurons \
        --model_args pretrained=MODEL,steer_path=steer.pt --tasks TASK

MODEL is a folder, a hub id, a .gguf file or a built-in name; the last two are resolved to their
converted folder in the cache, which lm-eval loads. `delta=DIR` (a finetune folder) applies a
fine-tuning delta after loading, with or without a steering file (give the dtype it was trained in,
e.g. `dtype=float32`, where the model's config names another).

A steering file that is missing, unreadable or made for another model, a missing or damaged delta,
and a model that cannot be found, are InputErrors raised before the model is loaded; a delta of
another model is refused once it is loaded.
"""

from __future__ import annotations

import itertools
import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.hf_steered import SteeredModel
from lm_eval.models.huggingface import HFLM
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from transfer_neurons.errors import InputError
from transfer_neurons.model.delta import AppliedDelta, Delta, apply_delta
from transfer_neurons.model.gguf import first_line
from transfer_neurons.model.loading import resolve_model_folder

MODEL_NAME = "transfer-neurons"
_LAYER = re.compile(r"layers\.(\d+)\.")
_REWRITE = "write it with transfer-neurons export-steering"


def read_steering(path: str | Path) -> dict[str, torch.Tensor]:
    """The [1, m] factor vector per hookpoint of a steering file written by export-steering; InputError
    when the file is missing, unreadable or in another format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"steering file '{path}' does not exist; {_REWRITE}")
    try:
        config = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise InputError(
            f"steering file '{path}' is damaged or not a torch file ({first_line(exc)}); {_REWRITE}"
        ) from exc
    if not isinstance(config, dict) or not config:
        raise InputError(f"steering file '{path}' holds no hookpoints; {_REWRITE}")
    factors = {}
    for hookpoint, entry in config.items():
        action = entry.get("action") if isinstance(entry, dict) else None
        if action != "multiply":
            raise InputError(f"steering file '{path}': hookpoint {hookpoint} has action {action!r}, not 'multiply'")
        vector = entry.get("steering_vector")
        if not isinstance(vector, torch.Tensor) or vector.ndim != 2 or vector.shape[0] != 1:
            raise InputError(f"steering file '{path}': hookpoint {hookpoint} has no [1, m] steering_vector; {_REWRITE}")
        factors[str(hookpoint)] = vector
    return factors


def check_fits(factors: dict[str, torch.Tensor], path: str | Path, pretrained: str) -> str:
    """Refuse, from the model's config alone, a steering file made for another model: a hookpoint beyond
    its layers, or factor vectors of another width than its MLP. InputError too when the model is not found.
    Returns what lm-eval loads: a built-in name or a .gguf file resolved to its converted folder."""
    folder = resolve_model_folder(pretrained)
    try:
        config = AutoConfig.from_pretrained(folder).get_text_config()
    except (OSError, ValueError) as exc:
        if Path(pretrained).expanduser().exists():
            raise InputError(f"could not load model '{pretrained}': {first_line(exc)}") from exc
        raise InputError(
            f"model '{pretrained}' is neither a folder here nor a model on the hub ({first_line(exc)}); "
            "give pretrained=FOLDER or a hub id"
        ) from exc
    layers = config.num_hidden_layers
    width = getattr(config, "intermediate_size", None)
    fix = "export the steering file from a detect run of this model"
    for hookpoint, vector in factors.items():
        match = _LAYER.match(hookpoint)
        if match and int(match.group(1)) >= layers:
            raise InputError(
                f"steering file '{path}' steers {hookpoint}, but '{pretrained}' has {layers} layers "
                f"(0-{layers - 1}); {fix}"
            )
        if isinstance(width, int) and vector.shape[1] != width:
            raise InputError(
                f"steering file '{path}' has {vector.shape[1]} factors at {hookpoint}, but the MLP of "
                f"'{pretrained}' has {width} neurons; {fix}"
            )
    return folder


def model_options(args: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """`--model` and `--model_args` of an lm-eval command line, read here (lm-eval parses them only
    after indexing every task): model args as one JSON object, `k=v,k2=v2`, or `k=v` words."""
    model: str | None = None
    words: list[str] = []
    for k, arg in enumerate(args):
        if arg in ("--model", "-m") and k + 1 < len(args):
            model = args[k + 1]
        elif arg.startswith("--model="):
            model = arg.removeprefix("--model=")
        elif arg in ("--model_args", "-a"):
            words = list(itertools.takewhile(lambda word: not word.startswith("-"), args[k + 1 :]))
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            loaded = json.loads(words[0])
        except json.JSONDecodeError as exc:
            raise InputError(f"--model_args is not valid JSON: {exc}") from exc
        return model, {str(key): str(value) for key, value in loaded.items()}
    parsed: dict[str, str] = {}
    for item in (item for word in words for item in word.split(",") if item):
        key, _, value = item.partition("=")
        parsed[key] = value
    return model, parsed


def check_model_args(model_args: dict) -> None:
    """Check lm-eval's `--model_args` for the `transfer-neurons` model before lm-eval starts (it indexes
    every task and loads the model first)."""
    _read_args(model_args.get("pretrained"), model_args.get("steer_path"), model_args.get("delta"))


def _read_args(
    pretrained: str | None, steer_path: str | None, delta: str | None
) -> tuple[str, dict[str, torch.Tensor], Delta | None]:
    """What lm-eval loads (`check_fits`), the steering factors ({} without a file) and the delta."""
    if not pretrained or not (steer_path or delta):
        raise InputError(
            "--model_args needs pretrained=MODEL and steer_path=FILE, delta=DIR or both, "
            "e.g. --model_args pretrained=MODEL,steer_path=FILE"
        )
    factors = read_steering(str(steer_path)) if steer_path else {}
    tuned = Delta.read(str(delta)) if delta else None
    return check_fits(factors, str(steer_path), str(pretrained)), factors, tuned


@dataclass
class _Loaded:
    """lm-eval's model and tokenizer as the target of `apply_delta`."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    delta: AppliedDelta | None = None
    store: Any = None


@register_model(MODEL_NAME)
class NeuronSteeredModel(SteeredModel):
    """lm-eval's steered HF model with a `multiply` action (per-neuron activation factors) and, with
    `delta`, a fine-tuning delta applied to its weights."""

    def __init__(
        self,
        pretrained: str,
        steer_path: str | None = None,
        device: str | None = None,
        delta: str | None = None,
        **kwargs,
    ) -> None:
        folder, factors, tuned = _read_args(pretrained, steer_path, delta)
        HFLM.__init__(self, pretrained=folder, device=device, **kwargs)
        if tuned is not None:
            apply_delta(_Loaded(self.model, self.tokenizer), tuned, delta)
        modules = dict(self.model.base_model.named_modules())
        unknown = [hookpoint for hookpoint in factors if hookpoint not in modules]
        if unknown:
            raise InputError(
                f"steering file '{steer_path}': no module {', '.join(unknown)} in '{pretrained}' "
                "(hookpoints name modules of the base model, e.g. layers.0.mlp.act_fn)"
            )
        self.hook_to_steer = {
            hookpoint: partial(torch.mul, other=vector.to(self.device, self.model.dtype))
            for hookpoint, vector in factors.items()
        }
