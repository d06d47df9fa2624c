"""`detect`: score every neuron and write the top-n transfer neurons (or language-specific neurons)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import detect as detect_analysis
from transfer_neurons.analyses import methods
from transfer_neurons.analyses.pool import pool_parts, read_reference
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.choices import Method, NeuronType
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
    BatchOpt,
    DeltaOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    MaxPairsOpt,
    ModelOpt,
    QuietOpt,
    StoreDtypeOpt,
    StoreOpt,
    echo_summary,
    user_errors,
)
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.distributed import init_from_env, is_main, local_device, shutdown
from transfer_neurons.model.loading import load_model


@user_errors
def detect(
    model: ModelOpt,
    lang: Annotated[str, typer.Option(help="L2 language code: the field/column name in the data (e.g. ja).")],
    data: Annotated[
        Path,
        typer.Option(
            help="Parallel pairs: JSONL with 'en' and L2 fields, or TSV with a header row "
            "(lape/ap: also a .txt or a JSONL/TSV field of --lang sentences)."
        ),
    ],
    out: Annotated[Path, path_option("Output folder for scores, neurons, centroids and manifest.")],
    type: Annotated[
        NeuronType | None,
        typer.Option("--type", help="type1 (L2 -> shared space, the default) or type2 (shared -> L2 space)."),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            help="tn: the paper's score; tn-centred: centred on the mean state of a multilingual pool "
            "(= --center); lape / ap: language-specific neurons (Tang et al. 2024 / Kojima et al. 2024)."
        ),
    ] = Method.tn,
    center: Annotated[
        bool, typer.Option(help="Centre the score on the pool of --data (en and L2) and --reference (tn-centred).")
    ] = False,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="Another language's sentences for the pool (repeat): a JSONL/TSV pair file (its non-en field), "
            "a .txt (every line; language from its name, e.g. udhr-ko.txt), or LANG=FILE."
        ),
    ] = None,
    top_n: Annotated[int, typer.Option(help="Number of top-ranked neurons to list in neurons.json.")] = 1000,
    layers: Annotated[
        str | None,
        typer.Option(
            help="Candidate layers, e.g. 0-19 or 0-3,8 (0-based). "
            "Default: the first 62.5% of layers for type1, the rest for type2, every layer for lape and ap."
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
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Score every neuron of the candidate layers and write the top-n transfer neurons (--method lape / ap:
    language-specific neurons, for comparison).

    Under torchrun each process scores its share of the sentences; rank 0 writes the results.
    """
    init_from_env(device)
    try:
        config = detect_analysis.DetectConfig(top_n=top_n, batch_size=batch_size, paper_compat=paper_compat)
        chosen = _method(method, center, type, paper_compat, bool(reference))
        sentences = methods.read_data(chosen, data, lang, max_sentences)
        references = [read_reference(spec) for spec in reference or []]
        if chosen is not Method.tn:
            methods.check_pool(chosen, lang, pool_parts(sentences, references))
        out = prepare_out_dir(out)
        lock: AbstractContextManager[Path] = locked(out) if is_main() else nullcontext(out)  # rank 0 writes
        with lock:
            show = not quiet and is_main()
            lm = load_model(
                model,
                device=local_device(device),
                dtype=dtype,
                progress=show,
                device_map=device_map,
                store=store,
                store_dtype=store_dtype,
                delta=delta,
            )
            if layers:
                config = config.model_copy(update={"layers": detect_analysis.parse_layers(layers, lm.num_layers)})
            kind = type or NeuronType.type1
            result = methods.detect_method(lm, chosen, sentences, references, config, kind, str(data), show)
            if is_main():
                files = {f"reference_{k}": part.source for k, part in enumerate(references)}
                result.save(out, {"model": model, **data_inputs(data=data, **files), **lm.delta_inputs()})
                echo_summary(result, out)
    finally:
        shutdown()


def _method(method: Method, center: bool, kind: NeuronType | None, paper_compat: bool, reference: bool) -> Method:
    """The method the options ask for; InputError for options that do not go together."""
    if center and method not in (Method.tn, Method.tn_centred):
        raise InputError(f"--center centres the TN score; drop it for --method {method}")
    method = Method.tn_centred if center else method
    if method in (Method.lape, Method.ap):
        if kind is not None:
            raise InputError(f"--type is for the TN methods; --method {method} finds neurons without a type")
        if paper_compat:
            raise InputError(f"--paper-compat is for the TN methods, not --method {method}")
    elif method is Method.tn and reference:
        raise InputError("--reference is for --center (tn-centred), lape and ap; add --center or drop --reference")
    return method
