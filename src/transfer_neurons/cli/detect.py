"""`detect`: score every neuron and write the top-n transfer neurons (or language-specific neurons)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import detect as detect_analysis
from transfer_neurons.analyses import methods
from transfer_neurons.analyses.pool import pool_parts, read_reference
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.choices import Method, NeuronType
from transfer_neurons.cli.common import MaxPairsOpt, out_option
from transfer_neurons.cli.options import ModelOptions, analysis_command, run_command
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import LoadedModel


@analysis_command(detect_analysis.DetectConfig, models="distributed", exclude={"layers"})
def detect(
    config: detect_analysis.DetectConfig,
    model: ModelOptions,
    lang: Annotated[str, typer.Option(help="L2 language code: the field/column name in the data (e.g. ja).")],
    data: Annotated[
        Path,
        typer.Option(
            help="Parallel pairs: JSONL with 'en' and L2 fields, or TSV with a header row "
            "(lape/ap: also a .txt or a JSONL/TSV field of --lang sentences)."
        ),
    ],
    out: Annotated[Path, out_option("scores, neurons, centroids and manifest")],
    neuron_type: Annotated[
        NeuronType | None,
        typer.Option("--type", help="type1 (L2 -> shared space, the default) or type2 (shared -> L2 space)."),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            help="tn: the paper's score; tn-centred: centred on the mean state of a multilingual pool; "
            "lape / ap: language-specific neurons (Tang et al. 2024 / Kojima et al. 2024)."
        ),
    ] = Method.tn,
    center: Annotated[bool, typer.Option(help="The same as --method tn-centred (the older spelling).")] = False,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="Another language's sentences for the pool (repeat): a JSONL/TSV pair file (its non-en field), "
            "a .txt (every line; language from its name, e.g. udhr-ko.txt), or LANG=FILE."
        ),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            help="Candidate layers, e.g. 0-19 or 0-3,8 (0-based). "
            "Default: the first 62.5% of layers for type1, the rest for type2, every layer for lape and ap."
        ),
    ] = None,
    max_sentences: MaxPairsOpt = None,
) -> None:
    """Score every neuron of the candidate layers and write the top-n transfer neurons (--method lape / ap:
    language-specific neurons, for comparison).

    Under torchrun each process scores its share of the sentences; rank 0 writes the results.
    """
    chosen = _method(method, center, neuron_type, config.paper_compat, bool(reference))
    sentences = methods.read_data(chosen, data, lang, max_sentences)
    references = [read_reference(spec) for spec in reference or []]
    if chosen is not Method.tn:
        methods.check_pool(chosen, lang, pool_parts(sentences, references))

    def compute(lm: LoadedModel) -> detect_analysis.Detection:
        chosen_layers = detect_analysis.parse_layers(layers, lm.num_layers) if layers else None
        settings = config.model_copy(update={"layers": chosen_layers}) if layers else config
        chosen_type = neuron_type or NeuronType.type1
        return methods.detect_method(
            lm, chosen, sentences, references, settings, chosen_type, str(data), model.progress
        )

    files = {f"reference_{k}": part.source for k, part in enumerate(references)}
    run_command(out, model, compute, data_inputs(data=data, **files), distributed=True)


def _method(
    method: Method, center: bool, neuron_type: NeuronType | None, paper_compat: bool, reference: bool
) -> Method:
    """The method the options ask for; InputError for options that do not go together."""
    if center and method not in (Method.tn, Method.tn_centred):
        raise InputError(f"--center centres the TN score; drop it for --method {method}")
    method = Method.tn_centred if center else method
    if method in (Method.lape, Method.ap):
        if neuron_type is not None:
            raise InputError(f"--type is for the TN methods; --method {method} finds neurons without a type")
        if paper_compat:
            raise InputError(f"--paper-compat is for the TN methods, not --method {method}")
    elif method is Method.tn and reference:
        raise InputError("--reference is for --center (tn-centred), lape and ap; add --center or drop --reference")
    return method
