"""`neurons` and `neuron`: pages of what each neuron of a set writes, when it fires, and what it does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import neuron_pages
from transfer_neurons.analyses.specificity import name_sets
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neuron_html import card_text
from transfer_neurons.artifacts.neurons import Neuron, read_neurons
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
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
    langs_for,
    max_items,
    read_any,
    user_errors,
)
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import load_model

SetsOpt = Annotated[list[Path], typer.Option(help="neurons.json (or detect folder) of a neuron set; repeat for more.")]
TokensOpt = Annotated[int, typer.Option(min=1, help="Tokens listed as promoted and as suppressed.")]
SentencesOpt = Annotated[
    int, typer.Option(min=1, help="Sentences per language listed where a neuron fires most/least.")
]
MaxOpt = Annotated[int | None, max_items("--max-sentences", "sentences per language")]


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


@user_errors
def neurons(
    model: ModelOpt,
    neurons: SetsOpt,
    data: Annotated[list[Path], typer.Option(help="Pair file (JSONL/TSV) per language, e.g. a test split; repeat.")],
    out: Annotated[Path, path_option("Output folder for index.html, n/LAYER_NEURON.html and neurons.jsonl.")],
    top_n: Annotated[int, typer.Option(min=1, help="Pages for the top-n neurons of each set.")] = 20,
    tokens: TokensOpt = 20,
    sentences: SentencesOpt = 5,
    max_sentences: MaxOpt = None,
    bootstrap: BootstrapOpt = 1000,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Neuron pages: an index of the top-n neurons of each set and one page per neuron (the tokens it
    promotes, its activation per language, the sentences where it fires most, what deactivating it does)."""
    config = neuron_pages.NeuronPagesConfig(
        top_n=top_n,
        tokens=tokens,
        sentences=sentences,
        bootstrap=bootstrap,
        seed=seed,
        batch_size=batch_size,
        max_sentences=max_sentences,
    )
    sets = name_sets([read_neurons(path) for path in neurons])
    for s in sets.values():
        s.check_top_k(top_n, "--top-n")
    texts = sentences_by_language(data, max_sentences)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(
            model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
        )
        result = neuron_pages.run(lm, sets, texts, config, progress=not quiet)
        inputs = data_inputs(
            **{f"data_{k}": path for k, path in enumerate(data)},
            **{f"neurons_{name}": s.source for name, s in sets.items()},
        )
        result.save(out, {"model": model, **inputs, **lm.delta_inputs()})
        for line in result.summary_lines():
            typer.echo(line)
        typer.echo(
            f"wrote {out}/{names.NEURON_INDEX}, {out}/{names.NEURON_ROWS}, {out}/{names.MANIFEST} and "
            f"{len(result.cards)} pages in {out}/{names.NEURON_CARDS}/"
        )


@user_errors
def neuron(
    model: ModelOpt,
    neurons: SetsOpt,
    ids: Annotated[
        list[str], typer.Argument(metavar="LAYER:NEURON", help="The neurons, e.g. 3:1414 (repeat for more).")
    ],
    data: Annotated[
        list[Path] | None, typer.Option(help="Pair file (JSONL/TSV) per language: adds activations and sentences.")
    ] = None,
    tokens: TokensOpt = 20,
    sentences: SentencesOpt = 5,
    max_sentences: MaxOpt = None,
    bootstrap: BootstrapOpt = 1000,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """One neuron's page as text: its rank in each set, the tokens it promotes and suppresses, and with
    --data its activation per language and the sentences where it fires most and least."""
    picked = [parse_neuron(spec) for spec in ids]
    config = neuron_pages.NeuronPagesConfig(
        tokens=tokens,
        sentences=sentences,
        bootstrap=bootstrap,
        seed=seed,
        batch_size=batch_size,
        max_sentences=max_sentences,
    )
    sets = name_sets([read_neurons(path) for path in neurons])
    texts = sentences_by_language(data or [], max_sentences)
    lm = load_model(
        model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
    )
    result = neuron_pages.run(lm, sets, texts, config, picked, progress=not quiet)
    for k, card in enumerate(result.cards):
        for line in ([""] if k else []) + card_text(card):
            typer.echo(line)
