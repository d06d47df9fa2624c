"""`specificity` and `overlap`: characterising neuron sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import overlap as overlap_analysis
from transfer_neurons.analyses import specificity as specificity_analysis
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.common import echo_summary, langs_for, out_option
from transfer_neurons.cli.options import ModelOptions, analysis_command, max_items, run_command
from transfer_neurons.data.pairs import read_sentences


@analysis_command(specificity_analysis.SpecificityConfig, models="store")
def specificity(
    config: specificity_analysis.SpecificityConfig,
    model: ModelOptions,
    neurons: Annotated[
        list[Path], typer.Option(help="A detect folder, or its neurons.json (repeat for several sets).")
    ],
    data: Annotated[
        list[Path],
        typer.Option(help="Monolingual sentences per language (repeat): JSONL/TSV field of that language, or .txt."),
    ],
    out: Annotated[Path, out_option("specificity.json, .safetensors and figure")],
    langs: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated language of each --data file, e.g. ja,ko,en (en: the en side of a pair "
            "file). Default: each file's one non-en field."
        ),
    ] = None,
    max_sentences: Annotated[
        int | None,
        typer.Option(
            *max_items("--max-sentences"),
            min=1,
            help="Use at most this many sentences per language (default: all). Alias: --max-sentences.",
        ),
    ] = None,
) -> None:
    """Language specificity (eta^2, ANOVA p) of the top-n neurons vs a random baseline of the same layers,
    with intervals over the sentences."""
    codes = langs_for(data, langs)
    sets = specificity_analysis.name_sets([read_neurons(path) for path in neurons])
    specificity_analysis.check_inputs(codes, sets, config)
    sentences = {code: read_sentences(path, code, max_sentences) for path, code in zip(data, codes, strict=True)}
    inputs = data_inputs(
        **{f"data_{code}": path for path, code in zip(data, codes, strict=True)},
        **{f"neurons_{name}": s.source for name, s in sets.items()},
    )
    run_command(out, model, lambda lm: specificity_analysis.run(lm, sentences, sets, config, model.progress), inputs)


@analysis_command(overlap_analysis.OverlapConfig, models=None)
def overlap(
    config: overlap_analysis.OverlapConfig,
    sets: Annotated[list[Path], typer.Argument(help="Detect folders or neurons.json files (two or more).")],
    out: Annotated[Path, out_option("overlap.json and figures")],
) -> None:
    """Layer distribution of each set's top-n neurons and Jaccard overlap between the sets."""
    neuron_sets = [read_neurons(path) for path in sets]
    num_layers, width = overlap_analysis.scores_shape(neuron_sets) or (None, None)
    with locked(prepare_out_dir(out)) as out:
        result = overlap_analysis.run(neuron_sets, num_layers, width, config)
        result.save(out, data_inputs(**{f"set{k}": s.source for k, s in enumerate(neuron_sets)}))
        echo_summary(result, out)
