"""`detect`: score every neuron and write the top-n transfer neurons."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import detect as detect_analysis
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.choices import NeuronType
from transfer_neurons.cli.common import (
    BatchOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    MaxPairsOpt,
    ModelOpt,
    QuietOpt,
    echo_summary,
    user_errors,
)
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.hooks.distributed import init_from_env, is_main, local_device, shutdown
from transfer_neurons.model.loading import load_model


@user_errors
def detect(
    model: ModelOpt,
    lang: Annotated[str, typer.Option(help="L2 language code: the field/column name in the data (e.g. ja).")],
    data: Annotated[
        Path, typer.Option(help="Parallel pairs: JSONL with 'en' and L2 fields, or TSV with a header row.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for scores, neurons, centroids and manifest.")],
    type: Annotated[
        NeuronType, typer.Option("--type", help="type1 (L2 -> shared space) or type2 (shared -> L2 space).")
    ] = NeuronType.type1,
    top_n: Annotated[int, typer.Option(help="Number of top-ranked neurons to list in neurons.json.")] = 1000,
    layers: Annotated[
        str | None,
        typer.Option(
            help="Candidate layers, e.g. 0-19 or 0-3,8 (0-based). "
            "Default: the first 62.5% of layers for type1, the rest for type2."
        ),
    ] = None,
    batch_size: BatchOpt = 16,
    max_sentences: MaxPairsOpt = None,
    paper_compat: Annotated[
        bool, typer.Option(help="Last-layer centroid from the final-norm output, as in the authors' code.")
    ] = False,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Score every neuron of the candidate layers and write the top-n transfer neurons.

    Under torchrun each process scores its share of the sentences; rank 0 writes the results.
    """
    init_from_env(device)
    try:
        config = detect_analysis.DetectConfig(top_n=top_n, batch_size=batch_size, paper_compat=paper_compat)
        pairs = read_pairs(data, lang, max_sentences)
        out = prepare_out_dir(out)
        lock: AbstractContextManager[Path] = locked(out) if is_main() else nullcontext(out)  # rank 0 writes
        with lock:
            show = not quiet and is_main()
            lm = load_model(model, device=local_device(device), dtype=dtype, progress=show, device_map=device_map)
            if layers:
                config = config.model_copy(update={"layers": detect_analysis.parse_layers(layers, lm.num_layers)})
            result = detect_analysis.run(lm, pairs, type, config, progress=show)
            if is_main():
                result.save(out, {"model": model, **data_inputs(data=data)})
                echo_summary(result, out)
    finally:
        shutdown()
