"""`latent` and `ablate`: latent-space dynamics, and with neurons deactivated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import ablate as ablate_analysis
from transfer_neurons.analyses import latent as latent_analysis
from transfer_neurons.analyses.latent import check_pairs
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.choices import Baseline
from transfer_neurons.cli.checks import path_option, seed_option
from transfer_neurons.cli.common import (
    BaselineSeedsOpt,
    BatchOpt,
    BootstrapOpt,
    ClampOpt,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    KOpt,
    MaxPairsOpt,
    ModelOpt,
    NeuronsOpt,
    QuietOpt,
    SeedOpt,
    StoreDtypeOpt,
    StoreOpt,
    TopKOpt,
    echo_summary,
    langs_for,
    read_any,
    user_errors,
)
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import load_model


@user_errors
def latent(
    model: ModelOpt,
    data: Annotated[list[Path], typer.Option(help="Parallel en-L2 pairs (repeat for several languages).")],
    out: Annotated[Path, path_option("Output folder for latent.json, latent.safetensors (PCA points) and figures.")],
    nonparallel: Annotated[
        list[Path] | None,
        typer.Option(help="Non-parallel en-L2 pairs per language (repeat). Default: the L2 side shifted by one."),
    ] = None,
    langs: Annotated[
        str | None, typer.Option(help="Comma-separated L2 codes, one per --data file. Default: read from the files.")
    ] = None,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxPairsOpt = None,
    batch_size: BatchOpt = 16,
    seed: Annotated[int, seed_option("the PCA and of the bootstrap")] = 0,
    bootstrap: BootstrapOpt = 1000,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Layer-by-layer latent dynamics: mutual kNN, parallel vs non-parallel similarity, PCA, centroids."""
    config = latent_analysis.LatentConfig(k=k, clamp=clamp, seed=seed, batch_size=batch_size, bootstrap=bootstrap)
    codes = langs_for(data, langs)
    datasets = [read_pairs(path, code, max_sentences) for path, code in zip(data, codes, strict=True)]
    for pairs in datasets:
        latent_analysis.check_pairs(pairs, k)
    files: dict[str, Path] = {f"data_{code}": path for code, path in zip(codes, data, strict=True)}
    np_sets = {}
    for path in nonparallel or []:
        pairs = read_any(path, max_sentences)
        if pairs.lang not in codes:
            raise InputError(f"non-parallel file '{path}' is for '{pairs.lang}', which no --data file covers")
        latent_analysis.check_nonparallel(datasets[codes.index(pairs.lang)], pairs, f"non-parallel file '{path}'")
        np_sets[pairs.lang] = pairs
        files[f"nonparallel_{pairs.lang}"] = path
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(
            model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
        )
        result = latent_analysis.run(lm, datasets, np_sets, config, progress=not quiet)
        result.save(out, {"model": model, **data_inputs(**files), **lm.delta_inputs()})
        echo_summary(result, out)


@user_errors
def ablate(
    model: ModelOpt,
    neurons: NeuronsOpt,
    data: Annotated[Path, typer.Option(help="Parallel en-L2 pairs in the language of --neurons.")],
    out: Annotated[Path, path_option("Output folder for ablation.json, the neuron sets and figures.")],
    top_k: TopKOpt = 1000,
    nonparallel: Annotated[
        Path | None, typer.Option(help="Non-parallel pairs. Default: L2 side shifted by one.")
    ] = None,
    baseline: Annotated[
        Baseline, typer.Option(help="Random baseline: same count per layer, or uniform over the candidate layers.")
    ] = Baseline.per_layer,  # noqa: E501
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxPairsOpt = None,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Latent analyses three times: normal, top-k neurons deactivated, random baseline (L2 inputs only)."""
    config = ablate_analysis.AblateConfig(
        top_k=top_k,
        baseline=baseline,
        seed=seed,
        baseline_seeds=baseline_seeds,
        bootstrap=bootstrap,
        k=k,
        clamp=clamp,
        batch_size=batch_size,
    )
    neuron_set = read_neurons(neurons)
    neuron_set.check_top_k(top_k)
    lang = neuron_set.lang or langs_for([data], None)[0]
    pairs = read_pairs(data, lang, max_sentences)
    check_pairs(pairs, k)
    np_pairs = None
    if nonparallel is not None:
        np_pairs = read_any(nonparallel, max_sentences, lang)
        latent_analysis.check_nonparallel(pairs, np_pairs, f"non-parallel file '{nonparallel}'")
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(
            model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
        )
        result = ablate_analysis.run(lm, neuron_set, pairs, np_pairs, config, progress=not quiet)
        inputs = data_inputs(neurons=neuron_set.source, data=data, nonparallel=nonparallel)
        result.save(out, {"model": model, **inputs, **lm.delta_inputs()})
        echo_summary(result, out)
