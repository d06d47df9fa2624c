"""`compare-methods`: the language-neuron methods side by side on one model and language."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import compare_methods as compare
from transfer_neurons.analyses.methods import store_groups
from transfer_neurons.analyses.pool import read_reference
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.cli.common import out_option, read_any
from transfer_neurons.cli.options import ModelOptions, analysis_command, run_command
from transfer_neurons.data.pairs import read_pairs


@analysis_command(compare.MethodsConfig, models="store", help={"top_k": "Compare the top-k neurons of each method."})
def compare_methods(
    config: compare.MethodsConfig,
    model: ModelOptions,
    lang: Annotated[str, typer.Option(help="L2 language code: the field name in the pair files (e.g. ja).")],
    train: Annotated[Path, typer.Option(help="en-L2 pairs every method detects its neurons on (JSONL/TSV).")],
    test: Annotated[Path, typer.Option(help="en-L2 test pairs of the ablations (and prompts of --output-lang).")],
    out: Annotated[Path, out_option("methods.json, methods.png and one detect folder per set")],
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="Another language's sentences for the pool of tn-centred, lape and ap (repeat): a JSONL/TSV "
            "pair file (its non-en field), a .txt (language from its name, e.g. udhr-ko.txt), or LANG=FILE."
        ),
    ] = None,
    nonparallel: Annotated[
        Path | None, typer.Option(help="Non-parallel test pairs. Default: the L2 side shifted by one.")
    ] = None,
) -> None:
    """The top-k of each language-neuron method under the same tests and seeds: deactivation effect on
    mutual kNN and the centred gap vs random, output language, QA, eta^2, overlap, TN scores, and the
    share of their value vectors in the massive dimensions."""
    train_pairs, test_pairs = read_pairs(train, lang), read_pairs(test, lang)
    np_pairs = None if nonparallel is None else read_any(nonparallel, None, lang)
    references = [read_reference(spec) for spec in reference or []]
    compare.check_inputs(train_pairs, test_pairs, np_pairs, references, config)
    files = {f"reference_{n}": part.source for n, part in enumerate(references)}
    inputs = data_inputs(train=train, test=test, nonparallel=nonparallel, **files)
    # without --store, a temporary one: the methods' detections and ablations share their normal states
    with tempfile.TemporaryDirectory(prefix="tn-store-") as scratch:
        run_command(
            out,
            model,
            lambda lm: compare.run(
                lm, train_pairs, test_pairs, np_pairs, references, config, str(train), model.progress
            ),
            inputs,
            store=model.store or Path(scratch),
            store_groups=store_groups(config.methods),
        )
