"""Command line: a thin layer that parses options into an analysis config, calls `run`, saves, prints.

Bad input: one `error:` line and exit status 2."""

from __future__ import annotations

from transfer_neurons.cli import characterise, detect, downstream, latent, resources, steering, study  # noqa: F401
from transfer_neurons.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app(prog_name="transfer-neurons")
