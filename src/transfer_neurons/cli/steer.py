"""`steer`: steer the output language with neuron sets against random sets (analyses/steer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import steer as steer_analysis
from transfer_neurons.analyses.means import STORE_GROUP, LanguageMeans, language_means
from transfer_neurons.analyses.output_lang import identifier_for
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.common import out_option
from transfer_neurons.cli.fields import parse_list
from transfer_neurons.cli.options import ModelOptions, analysis_command, max_items, run_command
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import LoadedModel

SetsOpt = Annotated[list[Path], typer.Option(help="A neuron set of the target language (repeat for several).")]


def parse_stats(items: list[str]) -> dict[str, Path]:
    """['ja=ja.txt', 'ko=ko.jsonl'] -> {lang: file}; InputError for an item without 'LANG=FILE'."""
    out = {}
    for item in items:
        lang, _, path = item.partition("=")
        if not lang.strip() or not path.strip():
            raise InputError(f"--stats '{item}' must be LANG=FILE (e.g. ja=ja.jsonl)")
        out[lang.strip()] = Path(path.strip())
    return out


@analysis_command(
    steer_analysis.SteerConfig,
    models="store",
    exclude={"methods", "alphas"},
    flags={"max_prompts": max_items("--max-prompts")},
)
def steer(
    config: steer_analysis.SteerConfig,
    model: ModelOptions,
    out: Annotated[Path, out_option("steer.json, steer.jsonl, steer.png and the means")],
    neurons: SetsOpt,
    source: Annotated[str, typer.Option(help="Language of the prompts.")],
    target: Annotated[str | None, typer.Option(help="Language to steer toward. Default: that of --neurons.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Prompts: the --source field of a JSONL/TSV file or a .txt file. Default: built-in QA."),
    ] = None,
    stats: Annotated[
        list[str] | None,
        typer.Option(help="LANG=FILE: sentences whose mean activations give the values (repeat; target and others)."),
    ] = None,
    means: Annotated[Path | None, typer.Option(help="A steer folder whose means.json/.safetensors to reuse.")] = None,
    source_neurons: Annotated[
        list[Path] | None, typer.Option(help="The source language's sets, one per --neurons, in the same order.")
    ] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated: add, set, diffmean, scale.")] = "add,diffmean",
    alphas: Annotated[str, typer.Option(help="Comma-separated grid of alpha.")] = "1,2,4",
    max_stats: Annotated[int | None, typer.Option(min=1, help="Use at most this many --stats sentences.")] = None,
) -> None:
    """Steer the output language: target/source/other/blank shares and fluency per set, method and alpha,
    each against random sets of the same per-layer shape (alpha chosen on dev prompts, reported on test)."""
    sets = [read_neurons(path) for path in neurons]
    sources = [read_neurons(path) for path in source_neurons or []]
    target = target or sets[0].lang
    if not target:
        raise InputError("give --target (the first --neurons names no language)")
    known = [m.value for m in steer_analysis.SteerMethod]
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    if not chosen or any(m not in known for m in chosen):
        raise InputError(f"--methods '{methods}': use one or more of {', '.join(known)}")
    config = steer_analysis.SteerConfig(
        **(
            config.model_dump()
            | {"methods": tuple(chosen), "alphas": parse_list(alphas, "--alphas", tuple[float, ...], "alpha")}
        )
    )
    identifier_for(config.langid_langs, source)  # unknown languages: before the model loads
    files = parse_stats(stats or [])
    if means is None and not files:
        raise InputError("give --stats LANG=FILE for the target and other languages (or --means DIR)")
    if means is None and target not in files:
        raise InputError(f"'mean:{target}': no --stats sentences of '{target}'; add --stats {target}=FILE")
    sentences = {lang: read_sentences(path, lang, max_stats) for lang, path in files.items()}
    kept = None if means is None else LanguageMeans.load(means)
    prompts = (
        [item.question for item in load_qa(None, source, config.max_prompts)]
        if data is None
        else read_sentences(data, source, config.max_prompts)
    )

    def compute(lm: LoadedModel) -> steer_analysis.SteerResult:
        values = kept or language_means(lm, sentences, progress=model.progress)
        return steer_analysis.run(lm, prompts, sets, values, config, source, target, sources, model.progress)

    paths = {f"neurons_{k}": s.source for k, s in enumerate([*sets, *sources])}
    inputs = data_inputs(data=data, **{k: v for k, v in paths.items() if v})
    run_command(out, model, compute, inputs, store_groups=("last", STORE_GROUP))
