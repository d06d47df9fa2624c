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

app.command()(detect.detect)
app.command()(latent.latent)
app.command()(latent.ablate)
app.command()(characterise.specificity)
app.command()(characterise.overlap)
app.command("compare-methods")(compare_methods.compare_methods)
app.command()(finetune.finetune)
app.command()(compare.compare)
app.command()(downstream.qa)
app.command()(downstream.mc)
app.command("output-lang")(downstream.output_lang)
app.command("logit-lens")(downstream.logit_lens)
app.command()(neurons.neurons)
app.command()(neurons.neuron)
app.command()(sweep.sweep)
app.command()(steering.generate)
app.command()(steer.steer)
app.command("export-steering")(steering.export_steering)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)(
    steering.harness
)
app.command("run")(study.run_study_command)
app.command()(study.demo)
app.add_typer(resources.models_app, name="models")
app.add_typer(resources.data_app, name="data")


def main() -> None:
    app(prog_name="transfer-neurons")
