"""`generate`, `export-steering` and `harness`: interventions outside the analyses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.artifacts.io import read_tensors
from transfer_neurons.choices import Positions
from transfer_neurons.cli.common import DeviceOpt, DtypeOpt, ModelOpt, NeuronsOpt, TopKOpt, user_errors
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.generation import generate as run_generate
from transfer_neurons.hooks.interventions import Intervention
from transfer_neurons.model.loading import load_model


@user_errors
def generate(
    model: ModelOpt,
    prompt: Annotated[list[str], typer.Option(help="Prompt text (repeat for several).")],
    neurons: Annotated[Path | None, typer.Option(help="neurons.json written by detect.")] = None,
    top_k: TopKOpt = 100,
    factor: Annotated[float, typer.Option(help="Activation factor: 0 deactivates, > 1 amplifies.")] = 0.0,
    positions: Annotated[
        Positions, typer.Option(help="Where to scale: last prompt token, prompt, or all (incl. generated).")
    ] = Positions.all,  # noqa: E501
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 40,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
) -> None:
    """Generate greedily with and without an intervention (e.g. amplify Type-2 neurons of a language)."""

    intervention = None
    if neurons is not None:
        intervention = Intervention.from_neurons_json(neurons, top_k, factor, positions.value)
    lm = load_model(model, device=device, dtype=dtype, progress=False)
    normal = run_generate(lm, prompt, None, max_new_tokens)
    steered = run_generate(lm, prompt, intervention, max_new_tokens) if intervention else None
    for k, text in enumerate(prompt):
        typer.echo(f"prompt: {text}\n  normal: {normal[k].strip()}")
        if steered is not None:
            typer.echo(f"  top-{top_k} x {factor:g} ({positions.value}): {steered[k].strip()}")


@user_errors
def export_steering(
    neurons: NeuronsOpt,
    out: Annotated[Path, typer.Option(help="Steering file to write (.pt).")],
    top_k: TopKOpt = 1000,
    factor: Annotated[float, typer.Option(help="Activation factor: 0 deactivates, > 1 amplifies.")] = 0.0,
) -> None:
    """Write an lm-evaluation-harness steering file (multiply action on layers.{l}.mlp.act_fn)."""
    scores_file = neurons.parent / "scores.safetensors"
    if not scores_file.is_file():
        raise InputError(f"'{scores_file}' is missing: export needs the detect folder to know the MLP width")
    width = read_tensors(scores_file)["scores"].shape[1]
    if out.suffix not in {".pt", ".pth"}:
        raise InputError(f"steering file '{out}' must end in .pt or .pth (the harness reads it by extension)")
    intervention = Intervention.from_neurons_json(neurons, top_k, factor, "all")
    intervention.export_steering(out, width)
    typer.echo(f"wrote {out}: {top_k} neurons x {factor:g} over {len(intervention.counts_per_layer())} layers")


@user_errors
def harness(ctx: typer.Context) -> None:
    """Run lm-evaluation-harness (same arguments as lm_eval) with the `transfer-neurons` model registered:
    run --model transfer-neurons --model_args pretrained=M,steer_path=steer.pt --tasks T."""
    try:
        from lm_eval.__main__ import cli_evaluate

        from transfer_neurons.hooks import harness as _registers_model  # noqa: F401
    except ImportError as exc:
        raise InputError("lm-evaluation-harness is not installed: pip install 'transfer-neurons[harness]'") from exc
    sys.argv = ["transfer-neurons harness", *ctx.args]
    cli_evaluate()
