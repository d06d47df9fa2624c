"""`compare`: several models side by side, from finished study runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.artifacts.io import prepare_out_dir
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import user_errors
from transfer_neurons.study.compare import compare_runs


@user_errors
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Finished single-model study runs (two or more).")],
    out: Annotated[Path, path_option("Output folder for models.json, figures and report.html.")] = Path("runs/compare"),
) -> None:
    """Compare models from finished `transfer-neurons run` folders: mutual kNN and the centred gap over
    relative depth (layer / L), where each type's top-n sits, ablation effects and specificity shares."""
    report = compare_runs(runs, prepare_out_dir(out))
    typer.echo(f"report: {report}")
