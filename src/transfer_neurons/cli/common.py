"""What every command shares: the typer app, one-line errors, shared option types, input helpers."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from pydantic import ValidationError

from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.cli.checks import one_line_warnings, path_option
from transfer_neurons.data.pairs import data_lang, read_pairs
from transfer_neurons.errors import InputError

# click's exceptions, wherever this typer takes click from (its own copy since 0.2x, the click package
# before): the module of typer's public BadParameter, instead of a private import path
click_errors: Any = importlib.import_module(typer.BadParameter.__module__)


def usage_message(exc: Any) -> str:
    """One line for a usage error that typer finds itself (a value out of range or of the wrong type,
    an unknown or missing option): `<option>: <what is wrong>`, and where help is when that helps."""
    help_hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    param = getattr(exc, "param", None)
    if isinstance(exc, click_errors.MissingParameter) and param is not None:
        message = f"{_param_name(param)}: missing; this {param.param_type_name} is required{help_hint}"
    elif isinstance(exc, click_errors.BadParameter) and param is not None:
        message = f"{_param_name(param)}: {exc.message.removeprefix('Value error, ')}"
    elif isinstance(exc, click_errors.NoSuchOption):
        guess = f"; did you mean {' or '.join(sorted(exc.possibilities))}?" if exc.possibilities else ""
        message = f"{exc.option_name}: no such option{guess}{help_hint}"
    else:
        message = f"{exc.format_message().rstrip('.')}{help_hint}"
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _param_name(param: Any) -> str:
    """`--batch-size` for an option (its long form), `NAMES` for an argument."""
    if param.param_type_name == "option":
        return max(param.opts, key=len)
    return str(param.name).upper()


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Print a usage error as one `error:` line and exit with its status (2), like every other bad
    input; the help that typer prints for a group called without arguments passes through."""
    try:
        yield
    except click_errors.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # not in click < 8.2
            raise
        typer.echo(f"error: {usage_message(exc)}", err=True)
        raise typer.Exit(exc.exit_code) from None


class OneLineErrorsGroup(typer.core.TyperGroup):
    """The app's command group: parsing the command line (its own options, then the subcommand's)
    reports usage errors through `one_line_usage_errors` instead of typer's usage box."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=OneLineErrorsGroup,
    help="Find and control transfer neurons in multilingual decoder LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def user_errors(command):
    """Turn InputError (and an invalid option value found by a config) into one line on stderr
    and exit status 2; the package's warnings are one line each."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with one_line_warnings():
                return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except ValidationError as exc:
            error = exc.errors()[0]
            option = "--" + "-".join(str(part).replace("_", "-") for part in error["loc"])
            typer.echo(f"error: {option}: {error['msg']}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def lang_option(what: str) -> Any:
    """The --lang option of a command whose `what` language is that of --neurons unless given."""
    return typer.Option(help=f"{what} language. Default: the language of --neurons.")


def out_option(what: str) -> Any:
    """The --out option of a command writing a result folder with `what` in it."""
    return path_option(f"Output folder for {what}.")


MaxPairsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-items",
        "--max-sentences",
        min=1,
        help="Use at most this many pairs per data file (default: all). Alias: --max-sentences.",
    ),
]
NeuronsOpt = Annotated[Path, typer.Option(help="A detect folder, or the neurons.json in it.")]
OptNeuronsOpt = Annotated[
    Path | None, typer.Option(help="A detect folder (or its neurons.json); adds the deactivated and random conditions.")
]
TopKOpt = Annotated[int, typer.Option(min=1, help="Use the top-k neurons of --neurons.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bars.")]


def neurons_lang(neurons: NeuronSet | None, lang: str | None) -> str:
    """--lang, else the language of the neuron set; InputError when neither gives one."""
    lang = lang or (neurons.lang if neurons is not None else None)
    if not lang:
        raise InputError("give --lang (or --neurons, whose language is used)")
    return lang


def source_inputs(source: str | None, neurons: NeuronSet | None) -> dict:
    inputs: dict[str, dict[str, Any]] = dict(data_inputs(neurons=None if neurons is None else neurons.source))
    if source is None:
        inputs["data"] = {"builtin": True}
    elif Path(source).is_file():
        inputs.update(data_inputs(data=source))
    else:
        inputs["data"] = {"hub": source}
    return inputs


def langs_for(paths: list[Path], langs: str | None) -> list[str]:
    """The language of each --data file: from --langs, else each file's one non-English field.
    A language may have one file only."""
    if langs is None:
        codes = [data_lang(path) for path in paths]
    else:
        codes = [code.strip() for code in langs.split(",") if code.strip()]
        if len(codes) != len(paths):
            raise InputError(f"--langs names {len(codes)} languages for {len(paths)} --data files; give one per file")
    if len(set(codes)) != len(codes):
        raise InputError(f"each language may have one --data file; got {', '.join(codes)}")
    return codes


def read_any(path: Path, max_sentences: int | None, lang: str | None = None):

    return read_pairs(path, lang or langs_for([path], None)[0], max_sentences)


def echo_summary(result: Result, out: Path) -> None:
    """Print a result's summary lines and the files written."""
    for line in result.summary_lines():
        typer.echo(line)
    typer.echo(result.written(out))
