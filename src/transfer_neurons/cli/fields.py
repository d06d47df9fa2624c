"""Options from config fields: each field of an analysis config is one option whose name, type,
bounds, default and help come from the field (a list is one comma-separated option), and the options'
values are parsed back into the config, a value it refuses one line naming the option."""

from __future__ import annotations

import inspect
import math
import types
import typing
from enum import Enum
from typing import Annotated, Any

import annotated_types
import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from transfer_neurons.analyses.base import Config
from transfer_neurons.cli.checks import finite
from transfer_neurons.errors import InputError

MODEL_PANEL = "Model and run"
CONTROL_PANEL = "Random baseline, seeds and intervals"
CONTROL_FIELDS = ("baseline", "seed", "baseline_seeds", "bootstrap")  # shown in CONTROL_PANEL
RUN_FIELDS = ("batch_size",)  # shown in MODEL_PANEL


def keyword_option(name: str, annotation: Any, default: Any, *flags: str, panel: str | None = None, **info: Any) -> Any:
    """One keyword-only parameter of a generated command (a bool: the flag and its --no- form)."""
    if annotation is bool:
        flags = (f"{flags[0]}/--no-{flags[0].removeprefix('--')}", *flags[1:])
    option = typer.Option(*flags, rich_help_panel=panel, **info)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple, dict)


def _text(value: Any) -> str:
    """A list value as the option writes it: '0,0.5,2', 'tn,lape', 'ja=Japonic,xx=Other'."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)


def parse_list(text: str, flag: str, annotation: Any, noun: str | None = None) -> Any:
    """The value of a comma-separated option: numbers, choices or words (`tuple[str, ...] | None`: 'all'
    is None); a dict from 'key=value,...'. InputError naming the option and the bad item; with `noun`
    (numbers, e.g. 'alpha'), empty items are skipped, an empty list is an error and the messages name
    the noun."""
    kind, optional = _unwrap(annotation)
    if optional and text.strip() == "all":
        return None
    items = [part.strip() for part in text.split(",")]
    if typing.get_origin(kind) is dict:
        pairs = [item.partition("=") for item in items if item]
        if not pairs or any(not k.strip() or not sep or not v.strip() for k, sep, v in pairs):
            raise InputError(f"{flag} '{text}' must look like key=value,key=value (e.g. ja=Japonic,xx=Other)")
        return {k.strip(): v.strip() for k, _, v in pairs}
    item, *_ = typing.get_args(kind) or (str,)
    if isinstance(item, type) and issubclass(item, Enum):
        known = [member.value for member in item]
        for part in (p for p in items if p):
            if part not in known:
                raise InputError(f"{flag}: unknown {item.__name__.lower()} '{part}'; choose among {', '.join(known)}")
        return [item(p) for p in items if p]
    if item in (int, float):
        if noun is not None:
            items = [part for part in items if part]
            if not items:
                raise InputError(f"{flag} is empty; give at least one {noun}, e.g. {flag} 1,2,4")
        return tuple(_number(part, text, flag, item, noun) for part in items)
    return tuple(part for part in items if part)


def _number(item: str, text: str, flag: str, kind: type, noun: str | None = None) -> float | int:
    """One number of a comma-separated list: finite (an integer >= 1 for `int`)."""
    what = "integers >= 1" if kind is int else "finite numbers"
    try:
        value = kind(item)
    except ValueError:
        raise InputError(f"{flag} '{text}': '{item}' is not a number; give comma-separated {what}") from None
    if noun is not None and not math.isfinite(value):
        raise InputError(f"{flag}: every {noun} must be a finite number, not {item}")
    if not math.isfinite(value) or (kind is int and value < 1):
        raise InputError(f"{flag} '{text}': {item} is out of range; give comma-separated {what}")
    return value


def _bounds(field: FieldInfo) -> tuple[Any, Any]:
    """(lowest, highest) value of a field (None where it has no bound)."""
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = bound.ge
        elif isinstance(bound, annotated_types.Gt) and isinstance(bound.gt, int):
            low = bound.gt + 1
        elif isinstance(bound, annotated_types.Le):
            high = bound.le
    return low, high


def field_option(name: str, field: FieldInfo, flags: tuple[str, ...], help: str | None, default: Any) -> Any:
    """The option of one config field: its type (a comma-separated text for lists), bounds (integers
    by typer, floats finite and within them), `default` and help (the field's description; aliases
    named)."""
    kind, optional = _unwrap(field.annotation)
    text = help or field.description or ""
    if len(flags) > 1:
        text += f" Alias: {', '.join(flags[1:])}."
    panel = CONTROL_PANEL if name in CONTROL_FIELDS else MODEL_PANEL if name in RUN_FIELDS else None
    info: dict[str, Any] = {}
    if _is_list(kind):
        annotation: Any = str | None if default is None else str
        default = None if default is None else _text(default)
        text = f"Comma-separated: {text[0].lower()}{text[1:]}" if text else text
        item = (typing.get_args(kind) or (str,))[0]
        if isinstance(item, type) and issubclass(item, Enum):  # the choices, as typer shows them for one
            text = f"{text.rstrip('.')} (among {', '.join(member.value for member in item)})."
    else:
        annotation = field.annotation
        low, high = _bounds(field)
        if kind is int:
            info = {"min": low, "max": high}
        elif kind is float:
            info = {"callback": finite(None if low is None or high is None else (low, high))}
    return keyword_option(name, annotation, default, *flags, panel=panel, help=text, **info)


def config_options(
    config: type[Config],
    exclude: set[str],
    flags: dict[str, tuple[str, ...]],
    help: dict[str, str],
    defaults: dict[str, Any],
) -> list[Any]:
    """The options of every field of `config` but `exclude` (`defaults`: the command's own, where it
    differs from the config's)."""
    return [
        field_option(
            name,
            field,
            flags.get(name, ("--" + name.replace("_", "-"),)),
            help.get(name),
            defaults.get(name, field.get_default(call_default_factory=True)),
        )
        for name, field in config.model_fields.items()
        if name not in exclude
    ]


def build_config(config: type[Config], values: dict[str, Any], flags: dict[str, tuple[str, ...]]) -> Any:
    """The config of the options' values; lists parsed; a value it refuses: one line naming the option."""
    parsed = {}
    for name, value in values.items():
        annotation = config.model_fields[name].annotation
        flag = flags.get(name, ("--" + name.replace("_", "-"),))[0]
        parsed[name] = (
            parse_list(value, flag, annotation)
            if isinstance(value, str) and _is_list(_unwrap(annotation)[0])
            else value
        )
    try:
        return config(**parsed)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        flag = flags.get(name, ("--" + name.replace("_", "-"),))[0]
        raise InputError(f"{flag}: {error['msg']}") from None
