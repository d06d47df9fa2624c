"""`run` and `demo`: whole studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.artifacts.io import prepare_out_dir
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import QuietOpt, user_errors
from transfer_neurons.data.examples import example_data
from transfer_neurons.errors import InputError
from transfer_neurons.study.config import describe, load_config
from transfer_neurons.study.runner import run_study


@user_errors
def demo(
    out: Annotated[Path, path_option("Run directory.")] = Path("runs/demo"),
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated models to study and compare instead of Gemma-3-270M, e.g. gemma-3-270m,smollm2-135m."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Recompute every step.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """The built-in study: Gemma-3-270M on the UDHR corpus, en + ja ko nl it de fr zh, with a report."""
    config = load_config(example_data("demo.yaml"))
    if models is not None:
        names = [name.strip() for name in models.split(",") if name.strip()]
        if not names:
            raise InputError("--models: give one or more models separated by commas, e.g. gemma-3-270m,smollm2-135m")
        config = config.with_models(names)
    out = prepare_out_dir(out)
    report = run_study(config, out, force=force, progress=not quiet, log=typer.echo)
    typer.echo(f"report: {report.resolve()}")


@user_errors
def run_study_command(
    config: Annotated[Path | None, typer.Argument(help="Study config (YAML or TOML).")] = None,
    out: Annotated[Path | None, path_option("Run directory. Default: runs/<config name>.")] = None,
    force: Annotated[bool, typer.Option(help="Recompute every step, even those already done.")] = False,
    help_config: Annotated[bool, typer.Option(help="List every config key with its default, then exit.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a whole study from one config; finished steps are reused, so an interrupted run resumes."""
    if help_config:
        typer.echo(describe())
        return
    if config is None:
        raise InputError("give a study config file (transfer-neurons run study.yaml); --help-config lists its keys")
    study = load_config(config)
    out = prepare_out_dir(out or Path("runs") / config.stem)
    report = run_study(study, out, force=force, progress=not quiet, log=typer.echo)
    typer.echo(f"report: {report}")
