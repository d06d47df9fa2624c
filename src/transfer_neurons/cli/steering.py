"""`generate`, `export-steering` and `harness`: interventions outside the analyses."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from safetensors import SafetensorError

from transfer_neurons.artifacts.io import atomic_path, disk_error, read_tensors
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.choices import Positions
from transfer_neurons.cli.checks import finite, path_option
from transfer_neurons.cli.common import NeuronsOpt, TopKOpt, user_errors
from transfer_neurons.cli.options import ModelOptions, analysis_command
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import generate as run_generate
from transfer_neurons.hooks.interventions import Intervention

FactorOpt = Annotated[
    float,
    typer.Option(
        callback=finite(),
        help="Activation factor: 0 deactivates, > 1 amplifies, negative flips the neuron's contribution.",
    ),
]


@analysis_command(models="quiet")
def generate(
    model: ModelOptions,
    prompt: Annotated[list[str], typer.Option(help="Prompt text (repeat for several).")],
    neurons: Annotated[Path | None, typer.Option(help="A detect folder, or the neurons.json in it.")] = None,
    top_k: TopKOpt = 100,
    factor: FactorOpt = 0.0,
    positions: Annotated[
        Positions, typer.Option(help="Where to scale: last prompt token, prompt, or all (incl. generated).")
    ] = Positions.all,  # noqa: E501
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 40,
) -> None:
    """Generate greedily with and without an intervention (e.g. amplify Type-2 neurons of a language)."""
    neuron_set = None if neurons is None else read_neurons(neurons)
    if neuron_set is not None:
        neuron_set.check_top_k(top_k)
    lm = model.load()
    intervention = None
    if neuron_set is not None:
        lm.check_neurons(neuron_set)
        intervention = Intervention.from_neurons(neuron_set, top_k, factor, positions.value)
    normal = run_generate(lm, prompt, None, max_new_tokens)
    steered = run_generate(lm, prompt, intervention, max_new_tokens) if intervention else None
    for k, text in enumerate(prompt):
        typer.echo(f"prompt: {text}\n  normal: {normal[k].strip()}")
        if steered is not None:
            typer.echo(f"  top-{top_k} x {factor:g} ({positions.value}): {steered[k].strip()}")


@user_errors
def export_steering(
    neurons: NeuronsOpt,
    out: Annotated[Path, path_option("Steering file to write (.pt).")],
    top_k: TopKOpt = 1000,
    factor: FactorOpt = 0.0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing steering file.")] = False,
) -> None:
    """Write an lm-evaluation-harness steering file (multiply action on layers.{l}.mlp.act_fn)."""
    check_steering_out(out, force)
    neuron_set = read_neurons(neurons)
    intervention = Intervention.from_neurons(neuron_set, top_k, factor, "all")
    width = mlp_width(Path(str(neuron_set.source)), intervention)
    try:
        with atomic_path(out) as tmp:
            intervention.export_steering(tmp, width)
    except OSError as exc:  # a full disk: the temporary file is gone, nothing is written
        needed = 4 * width * len(intervention.counts_per_layer())  # the factor vectors, float32
        raise disk_error(exc, out.parent, "nothing was written", "choose another --out", needed) from exc
    typer.echo(f"wrote {out}: {steering_summary(intervention, factor)}")


def steering_summary(intervention: Intervention, factor: float) -> str:
    """What a steering file does, e.g. '1000 neurons deactivated (factor 0) in layers 0-9 (per layer: L0 150,
    L1 80, ...)'."""
    counts = intervention.counts_per_layer()
    if factor == 0:
        effect = "deactivated"
    elif factor < 0:
        effect = "flipped"
    elif factor < 1:
        effect = "damped"
    else:
        effect = "amplified" if factor > 1 else "left as they are"
    per_layer = ", ".join(f"L{layer} {count}" for layer, count in counts.items())
    where = f"layer {next(iter(counts))}" if len(counts) == 1 else f"layers {_spans(list(counts))}"
    return f"{len(intervention.neurons)} neurons {effect} (factor {factor:g}) in {where} (per layer: {per_layer})"


def _spans(layers: list[int]) -> str:
    """Sorted layer indices as ranges: [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    spans: list[list[int]] = []
    for layer in layers:
        if spans and layer == spans[-1][1] + 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def check_steering_out(out: Path, force: bool) -> None:
    """Refuse a steering file name the harness cannot read, an existing file (unless --force), and a
    place that cannot be written, before anything is read."""
    if out.suffix not in {".pt", ".pth"}:
        raise InputError(f"steering file '{out}' must end in .pt or .pth (the harness reads it by extension)")
    if out.is_dir():
        raise InputError(f"--out '{out}' is a folder; give a file name such as {out / 'steer.pt'}")
    if out.exists() and not force:
        raise InputError(f"steering file '{out}' exists; add --force to overwrite it")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write under '{parent}'; choose another --out")


def mlp_width(neurons: Path, intervention: Intervention) -> int:
    """The MLP width that detect recorded beside `neurons` (scores.safetensors), checked against the
    neurons' indices."""
    scores_file = neurons.parent / "scores.safetensors"
    if not scores_file.is_file():
        raise InputError(f"'{scores_file}' is missing: export needs the detect folder to know the MLP width")
    try:
        layers, width = read_tensors(scores_file)["scores"].shape
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"'{scores_file}' is damaged or not a detect scores file ({exc}); run detect again") from exc
    layer = max((l for l, _, _ in intervention.neurons), default=-1)
    neuron = max((i for _, i, _ in intervention.neurons), default=-1)
    if layer >= layers or neuron >= width:
        raise InputError(
            f"'{scores_file}' ([{layers} layers, {width} neurons]) does not fit '{neurons}' (layer {layer}, "
            f"neuron {neuron}): the files come from different models; run detect again"
        )
    return width


@user_errors
def harness(ctx: typer.Context) -> None:
    """Run lm-evaluation-harness (same arguments as lm_eval) with the `transfer-neurons` model registered:
    run --model transfer-neurons --model_args pretrained=M,steer_path=steer.pt --tasks T (M: a folder, hub id,
    .gguf file or built-in name; delta=DIR adds a finetune delta, with or without steer_path)."""
    try:
        from lm_eval.__main__ import cli_evaluate  # the `lm_eval` console script: its public entry point

        from transfer_neurons.hooks import harness as harness_model
    except ImportError as exc:
        raise InputError("lm-evaluation-harness is not installed: pip install 'transfer-neurons[harness]'") from exc
    model, model_args = harness_model.model_options(ctx.args)
    if model == harness_model.MODEL_NAME:
        harness_model.check_model_args(model_args)
    sys.argv = ["transfer-neurons harness", *ctx.args]
    try:
        cli_evaluate()
    except ValueError as exc:
        if str(exc).startswith("Tasks not found"):  # lm-eval's message for a task name it does not know
            raise InputError(f"{exc}; list the tasks with: transfer-neurons harness ls tasks") from exc
        raise
