"""`latent` and `ablate`: latent-space dynamics, and with neurons deactivated."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.choices import Baseline
from transfer_neurons.cli.common import (
    BatchOpt,
    ClampOpt,
    DeviceOpt,
    DtypeOpt,
    KOpt,
    MaxSentencesOpt,
    ModelOpt,
    NeuronsOpt,
    QuietOpt,
    TopKOpt,
    app,
    langs_for,
    read_any,
    read_for_knn,
    user_errors,
)
from transfer_neurons.errors import InputError


@app.command()
@user_errors
def latent(
    model: ModelOpt,
    data: Annotated[list[Path], typer.Option(help="Parallel en-L2 pairs (repeat for several languages).")],
    out: Annotated[Path, typer.Option(help="Output folder for latent.json and figures.")],
    nonparallel: Annotated[
        list[Path] | None,
        typer.Option(help="Non-parallel en-L2 pairs per language (repeat). Default: the L2 side shifted by one."),
    ] = None,
    langs: Annotated[
        str | None, typer.Option(help="Comma-separated L2 codes, one per --data file. Default: read from the files.")
    ] = None,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxSentencesOpt = None,
    batch_size: BatchOpt = 16,
    seed: Annotated[int, typer.Option(help="Seed of the PCA.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Layer-by-layer latent dynamics: mutual kNN, parallel vs non-parallel similarity, PCA, centroids."""
    from transfer_neurons.analyses.experiments import latent_study
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.model.loading import load_model

    codes = langs_for(data, langs)
    datasets = [read_for_knn(path, code, max_sentences, k) for path, code in zip(data, codes, strict=True)]
    files = {f"data_{d.lang}": path for d, path in zip(datasets, data, strict=True)}
    np_sets = {}
    for path in nonparallel or []:
        pairs = read_any(path, max_sentences)
        if pairs.lang not in codes:
            raise InputError(f"non-parallel file '{path}' is for '{pairs.lang}', which no --data file covers")
        np_sets[pairs.lang] = pairs
        files[f"nonparallel_{pairs.lang}"] = path
    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    start = time.perf_counter()
    result = latent_study(lm, datasets, np_sets, out, k, clamp, batch_size, seed, progress=not quiet)
    write_manifest(out, "latent", model=model, inputs=data_inputs(**files), seed=seed,
                   settings={"k": k, "clamp": clamp, "batch_size": batch_size, "max_sentences": max_sentences},
                   timings_s={"total": time.perf_counter() - start})  # fmt: skip
    for lang, curves in result["pairs"].items():
        best = max(range(len(curves["mknn"])), key=curves["mknn"].__getitem__)
        typer.echo(f"en-{lang}: mutual kNN peaks at layer {best} ({curves['mknn'][best]:.3f})")
    typer.echo(f"wrote {out}/latent.json and figures ({', '.join(result['figures'])})")


@app.command()
@user_errors
def ablate(
    model: ModelOpt,
    neurons: NeuronsOpt,
    data: Annotated[Path, typer.Option(help="Parallel en-L2 pairs in the language of --neurons.")],
    out: Annotated[Path, typer.Option(help="Output folder for ablation.json, the neuron sets and figures.")],
    top_k: TopKOpt = 1000,
    nonparallel: Annotated[
        Path | None, typer.Option(help="Non-parallel pairs. Default: L2 side shifted by one.")
    ] = None,
    baseline: Annotated[
        Baseline, typer.Option(help="Random baseline: same count per layer, or uniform over the candidate layers.")
    ] = Baseline.per_layer,  # noqa: E501
    seed: Annotated[int, typer.Option(help="Seed of the random baseline.")] = 0,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxSentencesOpt = None,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Latent analyses three times: normal, top-k neurons deactivated, random baseline (L2 inputs only)."""
    from transfer_neurons.analyses.experiments import run_ablation
    from transfer_neurons.artifacts.io import prepare_out_dir, read_json
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.hooks.interventions import Intervention
    from transfer_neurons.model.loading import load_model

    Intervention.from_neurons_json(neurons, top_k)  # check the file and --top-k before loading the model
    lang = read_json(neurons).get("lang") or langs_for([data], None)[0]
    pairs = read_for_knn(data, lang, max_sentences, k)
    np_pairs = None if nonparallel is None else read_any(nonparallel, max_sentences, lang)
    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    start = time.perf_counter()
    result = run_ablation(lm, neurons, top_k, pairs, np_pairs, out, baseline.value, seed, k, clamp, batch_size,
                          progress=not quiet)  # fmt: skip
    write_manifest(out, "ablate", model=model, seed=seed,
                   inputs=data_inputs(neurons=neurons, data=data, nonparallel=nonparallel),
                   settings={"top_k": top_k, "baseline": baseline.value, "k": k, "clamp": clamp,
                             "batch_size": batch_size, "positions": "last", "max_sentences": max_sentences},
                   timings_s={"total": time.perf_counter() - start})  # fmt: skip
    for name, figures in result["summary"].items():
        typer.echo(f"{name:>11}: mean mutual kNN {figures['mean_mknn']:.3f}, parallel - non-parallel "
                   f"similarity at layer {result['middle_layer']}: {figures['middle_gap']:+.3f}")  # fmt: skip
    typer.echo(f"wrote {out}/ablation.json, intervention.json, baseline.json and figures")


