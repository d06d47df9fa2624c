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
from transfer_neurons.choices import Baseline
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
    BaselineOpt,
    BaselineSeedsOpt,
    BatchOpt,
    BootstrapOpt,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    StoreDtypeOpt,
    StoreOpt,
    echo_summary,
    langs_for,
    max_items,
    user_errors,
)
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.metrics.specificity import parse_families
from transfer_neurons.model.loading import load_model


@user_errors
def specificity(
    model: ModelOpt,
    neurons: Annotated[
        list[Path], typer.Option(help="A detect folder, or its neurons.json (repeat for several sets).")
    ],
    data: Annotated[
        list[Path],
        typer.Option(help="Monolingual sentences per language (repeat): JSONL/TSV field of that language, or .txt."),
    ],
    out: Annotated[Path, path_option("Output folder for specificity.json, .safetensors and figure.")],
    langs: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated language of each --data file, e.g. ja,ko,en (en: the en side of a pair "
            "file). Default: each file's one non-en field."
        ),
    ] = None,
    top_n: Annotated[int, typer.Option(min=1, help="Characterise the top-n neurons of each set.")] = 1000,
    families: Annotated[
        str | None, typer.Option(help="Override language families, e.g. ja=Japonic,xx=Other (built-in table else).")
    ] = None,
    max_sentences: Annotated[int | None, max_items("--max-sentences", "sentences per language")] = None,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Language specificity (eta^2, ANOVA p) of the top-n neurons vs a random baseline of the same layers,
    with bootstrap intervals over the neurons."""
    config = specificity_analysis.SpecificityConfig(
        top_n=top_n,
        baseline=baseline,
        seed=seed,
        baseline_seeds=baseline_seeds,
        bootstrap=bootstrap,
        batch_size=batch_size,
        families=parse_families(families) or None,
    )
    codes = langs_for(data, langs)
    sets = specificity_analysis.name_sets([read_neurons(path) for path in neurons])
    specificity_analysis.check_inputs(codes, sets, config)
    sentences = {code: read_sentences(path, code, max_sentences) for path, code in zip(data, codes, strict=True)}
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(
            model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
        )
        result = specificity_analysis.run(lm, sentences, sets, config, progress=not quiet)
        inputs = data_inputs(
            **{f"data_{code}": path for path, code in zip(data, codes, strict=True)},
            **{f"neurons_{name}": s.source for name, s in sets.items()},
        )
        result.save(out, {"model": model, **inputs, **lm.delta_inputs()})
        echo_summary(result, out)


@user_errors
def overlap(
    sets: Annotated[list[Path], typer.Argument(help="Detect folders or neurons.json files (two or more).")],
    out: Annotated[Path, path_option("Output folder for overlap.json and figures.")],
    top_n: Annotated[
        int | None, typer.Option(min=1, help="Compare the top-n of each set. Default: the smallest set's size.")
    ] = None,
) -> None:
    """Layer distribution of each set's top-n neurons and Jaccard overlap between the sets."""
    config = overlap_analysis.OverlapConfig(top_n=top_n)
    neuron_sets = [read_neurons(path) for path in sets]
    num_layers, width = overlap_analysis.scores_shape(neuron_sets) or (None, None)
    with locked(prepare_out_dir(out)) as out:
        result = overlap_analysis.run(neuron_sets, num_layers, width, config)
        result.save(out, data_inputs(**{f"set{k}": s.source for k, s in enumerate(neuron_sets)}))
        echo_summary(result, out)
