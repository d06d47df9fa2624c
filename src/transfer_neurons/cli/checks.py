"""What the command line checks in every command's input besides typer's own checks: finite numbers,
seeds in the range every seeded library takes, paths to write that are not empty; and how the
package's warnings show (one line each)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from transfer_neurons.analyses.base import MAX_SEED


def seed_option(what: str) -> Any:
    """The --seed option: an integer from 0 to 2**32 - 1 (what every seeded library takes)."""
    return typer.Option(min=0, max=MAX_SEED, help=f"Seed of {what}.")


def written_path(value: str | Path) -> Path:
    """The value of an option naming a path to write: not empty (a shell's '' would mean the current
    folder, and results would land among the user's files). A default (a Path) passes as it is."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("must not be empty; give a path")
    return Path(value)


def path_option(help: str) -> Any:
    """An option naming a path to write (an output folder or file, a store): `written_path`."""
    return typer.Option(help=help, parser=written_path, metavar="PATH")


PACKAGE = str(Path(__file__).resolve().parents[1])


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """The package's own warnings (a neuron set checked by its shape only, a damaged store shard) as
    one `warning:` line on stderr; other libraries' warnings as they come."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def ours(message, category, filename, lineno, file=None, line=None):
            if str(Path(filename).resolve()).startswith(PACKAGE):
                typer.echo(f"warning: {message}", err=True)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = ours
        yield


def finite(within: tuple[float, float] | None = None) -> Callable[[float | None], float | None]:
    """A typer callback that refuses NaN and infinity (and values outside `within`) in a float option:
    typer's own range check lets NaN through or names a bound that is not the problem."""

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number, not {value}")
        if within is not None and not within[0] <= value <= within[1]:
            raise typer.BadParameter(f"must be between {within[0]:g} and {within[1]:g}, not {value:g}")
        return value

    return check
