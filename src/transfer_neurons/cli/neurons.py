"""`neurons` and `neuron`: pages of what each neuron of a set writes, when it fires, and what it does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import neuron_pages
from transfer_neurons.analyses.specificity import name_sets
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neuron_html import card_text
from transfer_neurons.artifacts.neurons import Neuron, read_neurons
from transfer_neurons.cli.common import langs_for, out_option, read_any
from transfer_neurons.cli.options import ModelOptions, analysis_command, max_items, run_command
from transfer_neurons.errors import InputError

SetsOpt = Annotated[list[Path], typer.Option(help="neurons.json (or detect folder) of a neuron set; repeat for more.")]
PAGES = {"flags": {"max_sentences": max_items("--max-sentences")}, "models": "store"}


def parse_neuron(spec: str) -> Neuron:
    """(layer, neuron) from 'LAYER:NEURON'; InputError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", spec)
    if match is None:
        raise InputError(f"'{spec}' is not a neuron; write LAYER:NEURON, e.g. 3:1414")
    return int(match[1]), int(match[2])


def sentences_by_language(paths: list[Path], max_sentences: int | None) -> dict[str, list[str]]:
    """The sentences of pair files (JSONL/TSV): each file's L2 side under its language, the English
    sides together under 'en' (each sentence once)."""
    sentences: dict[str, list[str]] = {}
    english: list[str] = []
    for path, code in zip(paths, langs_for(paths, None), strict=True):
        pairs = read_any(path, max_sentences, code)
        sentences[code] = pairs.l2
        english += pairs.en
    if english:
        sentences["en"] = list(dict.fromkeys(english))
    return sentences


@analysis_command(neuron_pages.NeuronPagesConfig, **PAGES)  # type: ignore[arg-type]
def neurons(
    config: neuron_pages.NeuronPagesConfig,
    model: ModelOptions,
    neurons: SetsOpt,
    data: Annotated[list[Path], typer.Option(help="Pair file (JSONL/TSV) per language, e.g. a test split; repeat.")],
    out: Annotated[Path, out_option("index.html, n/LAYER_NEURON.html and neurons.jsonl")],
) -> None:
    """Neuron pages: an index of the top-n neurons of each set and one page per neuron (the tokens it
    promotes, its activation per language, the sentences where it fires most, what deactivating it does)."""
    sets = name_sets([read_neurons(path) for path in neurons])
    for s in sets.values():
        s.check_top_k(config.top_n, "--top-n")
    texts = sentences_by_language(data, config.max_sentences)
    inputs = data_inputs(
        **{f"data_{k}": path for k, path in enumerate(data)},
        **{f"neurons_{name}": s.source for name, s in sets.items()},
    )
    run_command(out, model, lambda lm: neuron_pages.run(lm, sets, texts, config, progress=model.progress), inputs)


@analysis_command(neuron_pages.NeuronPagesConfig, exclude={"top_n"}, **PAGES)  # type: ignore[arg-type]
def neuron(
    config: neuron_pages.NeuronPagesConfig,
    model: ModelOptions,
    neurons: SetsOpt,
    ids: Annotated[
        list[str], typer.Argument(metavar="LAYER:NEURON", help="The neurons, e.g. 3:1414 (repeat for more).")
    ],
    data: Annotated[
        list[Path] | None, typer.Option(help="Pair file (JSONL/TSV) per language: adds activations and sentences.")
    ] = None,
) -> None:
    """One neuron's page as text: its rank in each set, the tokens it promotes and suppresses, and with
    --data its activation per language and the sentences where it fires most and least."""
    picked = [parse_neuron(spec) for spec in ids]
    sets = name_sets([read_neurons(path) for path in neurons])
    texts = sentences_by_language(data or [], config.max_sentences)
    result = neuron_pages.run(model.load(), sets, texts, config, picked, progress=model.progress)
    for k, card in enumerate(result.cards):
        for line in ([""] if k else []) + card_text(card):
            typer.echo(line)
