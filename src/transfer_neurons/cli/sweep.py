"""`sweep`: the language of continuations for every factor and top-k of a neuron set."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import sweep as sweep_analysis
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.choices import Positions
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
    DEFAULT_LANGID,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    LangIdOpt,
    ModelOpt,
    NeuronsOpt,
    QuietOpt,
    echo_summary,
    language_identifier,
    neurons_lang,
    user_errors,
)
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import load_model


def _numbers(text: str, option: str, kind: type[float] | type[int]) -> tuple:
    """A comma-separated list of finite numbers (integers >= 1 for `int`); InputError otherwise."""
    what = "integers >= 1" if kind is int else "finite numbers"
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = kind(item)
        except ValueError:
            raise InputError(f"{option} '{text}': '{item}' is not a number; give comma-separated {what}") from None
        if not math.isfinite(value) or (kind is int and value < 1):
            raise InputError(f"{option} '{text}': {item} is out of range; give comma-separated {what}")
        values.append(value)
    return tuple(values)


@user_errors
def sweep(
    model: ModelOpt,
    neurons: NeuronsOpt,
    data: Annotated[
        Path,
        typer.Option(help="L2 prompts: the --lang field of a JSONL/TSV file, or a .txt file with one prompt per line."),
    ],
    out: Annotated[Path, path_option("Output folder for sweep.json, sweep.jsonl and sweep.png.")],
    factor: Annotated[str, typer.Option(help="Comma-separated scaling factors (0 deactivates).")] = "0,0.5,2,4,8",
    top_k: Annotated[str, typer.Option(help="Comma-separated sizes of the scaled top-k sets.")] = "10,100,1000",
    lang: Annotated[str | None, typer.Option(help="Prompt language. Default: the language of --neurons.")] = None,
    max_items: Annotated[int, typer.Option(min=1, help="Use at most this many prompts.")] = 100,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate per prompt.")] = 24,
    positions: Annotated[
        Positions, typer.Option(help="Where to scale; 'all' includes the generated tokens.")
    ] = Positions.all,
    langid_langs: LangIdOpt = DEFAULT_LANGID,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Steering sweep: share of continuations in the prompt language for every factor x top-k."""
    factors, sizes = _numbers(factor, "--factor", float), _numbers(top_k, "--top-k", int)
    neuron_set = read_neurons(neurons)
    for k in sizes:
        neuron_set.check_top_k(k)
    lang = neurons_lang(neuron_set, lang)
    config = sweep_analysis.SweepConfig(
        factors=factors,
        top_k=sizes,
        positions=positions,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_items=max_items,
        langid_langs=language_identifier(langid_langs, lang).langs,
    )
    prompts = read_sentences(data, lang, config.max_items)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(model, device=device, dtype=dtype, progress=not quiet, delta=delta)
        result = sweep_analysis.run(lm, prompts, neuron_set, config, lang)
        result.save(out, data_inputs(data=data, neurons=neuron_set.source) | lm.delta_inputs())
        echo_summary(result, out)
