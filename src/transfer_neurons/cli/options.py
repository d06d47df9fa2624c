"""Commands built from the analyses' configs: each config field is an option (its name, type, bounds,
default and help come from the field), the model options are one shared group, and `run_command` is
the one path of an analysis command: lock the output folder, load the model, run, save, print.

An analysis command is its own inputs (files, neuron sets, the output folder) and a body:

    @analysis_command(QAConfig, flags={"max_questions": max_items("--max-questions")})
    def qa(config: QAConfig, model: ModelOptions, out: OutOpt, neurons: OptNeuronsOpt = None) -> None:
        items = ...
        run_command(out, model, lambda lm: qa_analysis.run(lm, items, ..., config, model.progress), inputs)

`config` and `model` are built from the generated options; a field's value that the config refuses is
one `error: --option: reason` line (`common.user_errors`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from transfer_neurons.analyses.base import Config
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.result import Result
from transfer_neurons.cli.checks import written_path
from transfer_neurons.cli.common import echo_summary, user_errors
from transfer_neurons.cli.fields import MODEL_PANEL, build_config, config_options, keyword_option
from transfer_neurons.hooks.distributed import init_from_env, is_main, local_device, shutdown
from transfer_neurons.model.loading import LoadedModel, load_model

R = TypeVar("R", bound=Result)


def max_items(old: str) -> tuple[str, str]:
    """The flags of an item limit: `--max-items` everywhere, its older name `old` kept as an alias."""
    return "--max-items", old


@dataclass(frozen=True)
class ModelOptions:
    """The model a command loads, as its shared options give it."""

    model: str
    device: str = "auto"
    dtype: str = "float32"
    quiet: bool = True  # a command without --quiet shows no progress
    delta: Path | None = None
    store: Path | None = None
    store_dtype: str = "float32"
    device_map: str | None = None

    @property
    def progress(self) -> bool:
        """Progress bars: unless --quiet, and only on the first process under torchrun."""
        return not self.quiet and is_main()

    def load(self, **extra: Any) -> LoadedModel:
        """The model, on this process's device under torchrun; `extra`: more of `load_model`'s options."""
        return load_model(
            self.model,
            device=local_device(self.device),
            dtype=self.dtype,
            progress=self.progress,
            device_map=self.device_map,
            store=extra.pop("store", self.store),
            store_dtype=self.store_dtype,
            delta=self.delta,
            **extra,
        )


MODEL = keyword_option(
    "model", str, inspect.Parameter.empty, "--model", "-m",
    help="Model folder, .gguf file, hub id or built-in name (gemma-3-270m, smollm2-135m).",
)  # fmt: skip
MODEL_OPTIONS = {  # name: (type, default, help, more of typer.Option)
    "device": (str, "auto", "cpu, cuda, cuda:N, or auto (GPU when available; under torchrun: cuda:LOCAL_RANK).", {}),
    "device_map": (
        str | None, None, "auto: spread a model larger than one device over the GPUs (then CPU, then disk) with "
        "accelerate; replaces --device.", {},
    ),
    "dtype": (
        str, "float32", "Model weights dtype: float32, bfloat16 or float16 (accumulation is always fp32/fp64).", {}
    ),
    "delta": (Path | None, None, "A finetune folder: its delta is applied to the model.", {}),
    "store": (
        Path | None, None, "Activation store folder: sentences seen before are read from it.",
        {"parser": written_path, "metavar": "PATH"},
    ),
    "store_dtype": (str, "float32", "Stored states' dtype: float32, or model (the model's own).", {}),
    "quiet": (bool, False, "No progress bars.", {}),
}  # fmt: skip
Models = Literal["quiet", "plain", "store", "distributed", "base"]
MODEL_GROUPS: dict[str, tuple[str, ...]] = {  # which model options a kind of command takes
    "quiet": ("device", "dtype", "delta"),  # no progress bars (generate)
    "base": ("device", "dtype", "quiet"),  # no delta (fine-tuning trains the base model)
    "plain": ("device", "dtype", "delta", "quiet"),
    "store": ("device", "dtype", "delta", "store", "store_dtype", "quiet"),
    "distributed": ("device", "device_map", "dtype", "delta", "store", "store_dtype", "quiet"),
}


def _model_option(name: str) -> Any:
    kind, default, help, info = MODEL_OPTIONS[name]
    return keyword_option(name, kind, default, f"--{name.replace('_', '-')}", panel=MODEL_PANEL, help=help, **info)


def analysis_command(
    config: type[Config] | None = None,
    *,
    models: Models | None = "plain",
    exclude: set[str] | frozenset[str] = frozenset(),
    flags: dict[str, tuple[str, ...]] | None = None,
    help: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command whose options are its own parameters (besides `config` and `model`), then the fields
    of `config` (but `exclude`; `flags` renames, `help` rewords, `defaults` replaces the config's),
    then the model options of `models` (None: no model). The body receives `config` (the analysis
    config) and `model` (`ModelOptions`)."""
    flags, help, defaults = flags or {}, help or {}, defaults or {}

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        own = [
            p for p in inspect.signature(body, eval_str=True).parameters.values() if p.name not in ("config", "model")
        ]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        fields = config_options(config, set(exclude), flags, help, defaults) if config is not None else []
        shared = [_model_option(name) for name in MODEL_GROUPS[models]] if models else []
        params = ([MODEL] if models else []) + own + fields + shared
        field_names = [p.name for p in fields]
        model_names = [p.name for p in ([MODEL] if models else []) + shared]

        @functools.wraps(body)
        def command(**values: Any) -> None:
            model = ModelOptions(**{name: values.pop(name) for name in model_names}) if models else None
            if config is not None:
                chosen = {name: values.pop(name) for name in field_names}
                values["config"] = build_config(config, chosen, flags)
            if models:
                values["model"] = model
            body(**values)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer reads the signature above, not the body's
        return user_errors(command)

    return decorate


def run_command(
    out: Path,
    model: ModelOptions,
    compute: Callable[[LoadedModel], R],
    inputs: dict[str, Any] | None = None,
    *,
    distributed: bool = False,
    **load: Any,
) -> R | None:
    """The one path of an analysis command: check and lock `out`, load the model (`load`: more of
    `load_model`'s options), `compute` the result, save it with the model and `inputs` recorded, print
    its summary. `distributed`: under torchrun every process computes, the first one writes."""
    if distributed:
        init_from_env(model.device)
    try:
        out = prepare_out_dir(out)
        with locked(out) if is_main() else nullcontext(out) as folder:  # the first process writes
            lm = model.load(**load)
            result = compute(lm)
            if is_main():
                result.save(folder, {"model": model.model, **(inputs or {}), **lm.delta_inputs()})
                echo_summary(result, folder)
            return result
    finally:
        if distributed:
            shutdown()
