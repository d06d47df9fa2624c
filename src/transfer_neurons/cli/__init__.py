"""Command line: a thin layer that parses options into an analysis config, calls `run`, saves, prints.

Bad input: one `error:` line and exit status 2. The commands are registered here, in the order
`--help` lists them.
"""

from __future__ import annotations

from transfer_neurons.cli import (
    characterise,
    compare,
    compare_methods,
    detect,
    downstream,
    finetune,
    latent,
    neurons,
    resources,
    steer,
    steering,
    study,
    sweep,
)
from transfer_neurons.cli.common import app

__all__ = ["app", "main"]

COMMANDS = (  # each named by its function, '_' as '-'
    detect.detect,
    latent.latent,
    latent.ablate,
    characterise.specificity,
    characterise.overlap,
    compare_methods.compare_methods,
    finetune.finetune,
    compare.compare,
    downstream.qa,
    downstream.mc,
    downstream.output_lang,
    downstream.logit_lens,
    neurons.neurons,
    neurons.neuron,
    sweep.sweep,
    steering.generate,
    steer.steer,
    steering.export_steering,
)
for command in COMMANDS:
    app.command()(command)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)(
    steering.harness
)
app.command("run")(study.run_study_command)
app.command()(study.demo)
app.add_typer(resources.models_app, name="models")
app.add_typer(resources.data_app, name="data")


def main() -> None:
    app(prog_name="transfer-neurons")
