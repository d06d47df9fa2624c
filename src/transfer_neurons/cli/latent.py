"""`latent` and `ablate`: latent-space dynamics, and with neurons deactivated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import ablate as ablate_analysis
from transfer_neurons.analyses import latent as latent_analysis
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.common import MaxPairsOpt, NeuronsOpt, langs_for, out_option, read_any
from transfer_neurons.cli.options import ModelOptions, analysis_command, run_command
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.errors import InputError


@analysis_command(latent_analysis.LatentConfig, models="store")
def latent(
    config: latent_analysis.LatentConfig,
    model: ModelOptions,
    data: Annotated[list[Path], typer.Option(help="Parallel en-L2 pairs (repeat for several languages).")],
    out: Annotated[Path, out_option("latent.json, latent.safetensors (PCA points) and figures")],
    nonparallel: Annotated[
        list[Path] | None,
        typer.Option(help="Non-parallel en-L2 pairs per language (repeat). Default: the L2 side shifted by one."),
    ] = None,
    langs: Annotated[
        str | None, typer.Option(help="Comma-separated L2 codes, one per --data file. Default: read from the files.")
    ] = None,
    max_sentences: MaxPairsOpt = None,
) -> None:
    """Layer-by-layer latent dynamics: mutual kNN, parallel vs non-parallel similarity, PCA, centroids."""
    codes = langs_for(data, langs)
    datasets = [read_pairs(path, code, max_sentences) for path, code in zip(data, codes, strict=True)]
    for pairs in datasets:
        latent_analysis.check_pairs(pairs, config.k)
    files: dict[str, Path] = {f"data_{code}": path for code, path in zip(codes, data, strict=True)}
    np_sets = {}
    for path in nonparallel or []:
        pairs = read_any(path, max_sentences)
        if pairs.lang not in codes:
            raise InputError(f"non-parallel file '{path}' is for '{pairs.lang}', which no --data file covers")
        latent_analysis.check_nonparallel(datasets[codes.index(pairs.lang)], pairs, f"non-parallel file '{path}'")
        np_sets[pairs.lang] = pairs
        files[f"nonparallel_{pairs.lang}"] = path
    run_command(
        out, model, lambda lm: latent_analysis.run(lm, datasets, np_sets, config, model.progress), data_inputs(**files)
    )


@analysis_command(ablate_analysis.AblateConfig, models="store", defaults={"top_k": 1000})
def ablate(
    config: ablate_analysis.AblateConfig,
    model: ModelOptions,
    neurons: NeuronsOpt,
    data: Annotated[Path, typer.Option(help="Parallel en-L2 pairs in the language of --neurons.")],
    out: Annotated[Path, out_option("ablation.json, the neuron sets and figures")],
    nonparallel: Annotated[
        Path | None, typer.Option(help="Non-parallel pairs. Default: L2 side shifted by one.")
    ] = None,
    max_sentences: MaxPairsOpt = None,
) -> None:
    """Latent analyses three times: normal, top-k neurons deactivated, random baseline (L2 inputs only)."""
    neuron_set = read_neurons(neurons)
    neuron_set.check_top_k(config.top_k)
    lang = neuron_set.lang or langs_for([data], None)[0]
    pairs = read_pairs(data, lang, max_sentences)
    latent_analysis.check_pairs(pairs, config.k)
    np_pairs = None
    if nonparallel is not None:
        np_pairs = read_any(nonparallel, max_sentences, lang)
        latent_analysis.check_nonparallel(pairs, np_pairs, f"non-parallel file '{nonparallel}'")
    run_command(
        out,
        model,
        lambda lm: ablate_analysis.run(lm, neuron_set, pairs, np_pairs, config, model.progress),
        data_inputs(neurons=neuron_set.source, data=data, nonparallel=nonparallel),
    )
