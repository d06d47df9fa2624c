"""`compare-methods`: the language-neuron methods side by side on one model and language."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import compare_methods as compare
from transfer_neurons.analyses.methods import store_groups
from transfer_neurons.analyses.pool import read_reference
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.choices import Baseline, Method
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
    BaselineOpt,
    BaselineSeedsOpt,
    BatchOpt,
    BootstrapOpt,
    ClampOpt,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    KOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    StoreDtypeOpt,
    StoreOpt,
    echo_summary,
    read_any,
    user_errors,
)
from transfer_neurons.data.pairs import read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import load_model

ALL_METHODS = ",".join(m.value for m in Method)


def parse_methods(spec: str) -> list[Method]:
    """'tn,lape' -> the methods; InputError naming an unknown one."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    for part in parts:
        if part not in {m.value for m in Method}:
            raise InputError(f"--methods: unknown method '{part}'; choose among {ALL_METHODS.replace(',', ', ')}")
    return [Method(part) for part in parts]


@user_errors
def compare_methods(
    model: ModelOpt,
    lang: Annotated[str, typer.Option(help="L2 language code: the field name in the pair files (e.g. ja).")],
    train: Annotated[Path, typer.Option(help="en-L2 pairs every method detects its neurons on (JSONL/TSV).")],
    test: Annotated[Path, typer.Option(help="en-L2 test pairs of the ablations (and prompts of --output-lang).")],
    out: Annotated[Path, path_option("Output folder for methods.json, methods.png and one detect folder per set.")],
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
    methods: Annotated[str, typer.Option(help=f"Comma-separated methods among {ALL_METHODS}.")] = ALL_METHODS,
    top_k: Annotated[int, typer.Option(min=1, help="Compare the top-k neurons of each method.")] = 100,
    output_lang: Annotated[
        bool, typer.Option(help="Output language of the L2 test sentences under each set's deactivation.")
    ] = True,
    qa: Annotated[bool, typer.Option(help="QA F1 under deactivation where the built-in questions have --lang.")] = True,
    max_items: Annotated[
        int | None, typer.Option("--max-items", min=1, help="Prompts and questions of the downstream parts.")
    ] = 16,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """The top-k of each language-neuron method under the same tests and seeds: deactivation effect on
    mutual kNN and the centred gap vs random, output language, QA, eta^2, overlap, TN scores, and the
    share of their value vectors in the massive dimensions."""
    config = compare.MethodsConfig(
        methods=parse_methods(methods),
        top_k=top_k,
        baseline=baseline,
        seed=seed,
        baseline_seeds=baseline_seeds,
        bootstrap=bootstrap,
        k=k,
        clamp=clamp,
        batch_size=batch_size,
        output_lang=output_lang,
        qa=qa,
        max_items=max_items,
    )
    train_pairs, test_pairs = read_pairs(train, lang), read_pairs(test, lang)
    np_pairs = None if nonparallel is None else read_any(nonparallel, None, lang)
    references = [read_reference(spec) for spec in reference or []]
    compare.check_inputs(train_pairs, test_pairs, np_pairs, references, config)
    groups = store_groups(config.methods)
    # without --store, a temporary one: the methods' detections and ablations share their normal states
    with locked(prepare_out_dir(out)) as out, tempfile.TemporaryDirectory(prefix="tn-store-") as scratch:
        kept = store or Path(scratch)
        lm = load_model(
            model, device, dtype, not quiet, store=kept, store_dtype=store_dtype, store_groups=groups, delta=delta
        )
        result = compare.run(lm, train_pairs, test_pairs, np_pairs, references, config, str(train), not quiet)
        files = {f"reference_{n}": part.source for n, part in enumerate(references)}
        inputs = data_inputs(train=train, test=test, nonparallel=nonparallel, **files)
        result.save(out, {"model": model, **inputs, **lm.delta_inputs()})
        echo_summary(result, out)
