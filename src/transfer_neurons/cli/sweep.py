"""`sweep`: the language of continuations for every factor and top-k of a neuron set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import sweep as sweep_analysis
from transfer_neurons.analyses.output_lang import identifier_for
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.common import NeuronsOpt, lang_option, neurons_lang, out_option
from transfer_neurons.cli.options import ModelOptions, analysis_command, run_command
from transfer_neurons.data.pairs import read_sentences


@analysis_command(sweep_analysis.SweepConfig, flags={"factors": ("--factor",)})
def sweep(
    config: sweep_analysis.SweepConfig,
    model: ModelOptions,
    neurons: NeuronsOpt,
    data: Annotated[
        Path,
        typer.Option(help="L2 prompts: the --lang field of a JSONL/TSV file, or a .txt file with one prompt per line."),
    ],
    out: Annotated[Path, out_option("sweep.json, sweep.jsonl and sweep.png")],
    lang: Annotated[str | None, lang_option("Prompt")] = None,
) -> None:
    """Steering sweep: share of continuations in the prompt language for every factor x top-k."""
    neuron_set = read_neurons(neurons)
    for k in config.top_k:
        neuron_set.check_top_k(k)
    lang = neurons_lang(neuron_set, lang)
    identifier_for(config.langid_langs, lang)  # unknown languages: before the model loads
    prompts = read_sentences(data, lang, config.max_items)
    run_command(
        out,
        model,
        lambda lm: sweep_analysis.run(lm, prompts, neuron_set, config, lang, model.progress),
        data_inputs(data=data, neurons=neuron_set.source),
    )
