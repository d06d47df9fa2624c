"""`qa`, `mc`, `output-lang` and `logit-lens`: downstream effects of deactivation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from transfer_neurons.analyses import logit_lens as logit_lens_analysis
from transfer_neurons.analyses import mc as mc_analysis
from transfer_neurons.analyses import output_lang as output_lang_analysis
from transfer_neurons.analyses import qa as qa_analysis
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.artifacts.result import Result
from transfer_neurons.cli.common import OptNeuronsOpt, lang_option, neurons_lang, out_option, source_inputs
from transfer_neurons.cli.options import ModelOptions, analysis_command, max_items, run_command
from transfer_neurons.data.mc import load_mc
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa

QuestionLangOpt = Annotated[str | None, lang_option("Question")]
SentencesOpt = Annotated[Path, typer.Option(help="L2 sentences: the --lang field of a JSONL/TSV file, or a .txt file.")]
NEURONS_HELP = {"top_k": "Deactivate the top-k neurons of --neurons."}


def _data_option(lines: str, hub: str, built_in: int) -> Any:
    """The --data option of `qa` and `mc`: a local JSONL of `lines`, a hub id or the built-in set."""
    return typer.Option(
        help=f"Local JSONL ({lines}) or a hub id such as {hub}. "
        f"Default: the built-in set ({built_in} questions in en/ja/ko/nl/it)."
    )


def _neurons_lang(neurons: Path | None, top_k: int, lang: str | None) -> tuple[NeuronSet | None, str]:
    """The neuron set of --neurons (checked against --top-k before the model loads) or None, and the
    language: --lang, else the set's."""
    neuron_set = None if neurons is None else read_neurons(neurons)
    if neuron_set is not None:
        neuron_set.check_top_k(top_k)
    return neuron_set, neurons_lang(neuron_set, lang)


def _questions(
    config: qa_analysis.QAConfig | mc_analysis.MCConfig,
    model: ModelOptions,
    out: Path,
    neurons: Path | None,
    lang: str | None,
    data: str | None,
    load: Callable[[str | None, str, int | None, str], Any],
    run: Callable[..., Result],
) -> None:
    """The body of `qa` and `mc`: the questions of --data (or the built-in set) in one language, then
    `run` on them."""
    neuron_set, lang = _neurons_lang(neurons, config.top_k, lang)
    items = load(data, lang, config.max_questions, config.split)
    run_command(
        out, model, lambda lm: run(lm, items, neuron_set, config, model.progress), source_inputs(data, neuron_set)
    )


def _sentences(
    config: output_lang_analysis.OutputLangConfig | logit_lens_analysis.LogitLensConfig,
    model: ModelOptions,
    data: Path,
    out: Path,
    neurons: Path | None,
    lang: str | None,
    max_items: int | None,
    run: Callable[..., Result],
) -> None:
    """The body of `output-lang` and `logit-lens`: the --lang sentences of --data, then `run` on them
    (logit-lens checks --tokens against the model)."""
    neuron_set, lang = _neurons_lang(neurons, config.top_k, lang)
    output_lang_analysis.identifier_for(config.langid_langs, lang)  # unknown languages: before the model loads
    sentences = read_sentences(data, lang, max_items)
    run_command(
        out,
        model,
        lambda lm: run(lm, sentences, neuron_set, config, lang, model.progress),
        data_inputs(data=data, neurons=None if neuron_set is None else neuron_set.source),
    )


@analysis_command(qa_analysis.QAConfig, flags={"max_questions": max_items("--max-questions")}, help=NEURONS_HELP)
def qa(
    config: qa_analysis.QAConfig,
    model: ModelOptions,
    out: Annotated[Path, out_option("qa.jsonl (per question), qa.json and figure")],
    neurons: OptNeuronsOpt = None,
    lang: QuestionLangOpt = None,
    data: Annotated[str | None, _data_option("question/answers/lang lines, or MKQA records", "apple/mkqa", 104)] = None,
) -> None:
    """Generative QA (MKQA style, token F1 over aliases): normal, top-k deactivated, random baseline."""
    _questions(config, model, out, neurons, lang, data, load_qa, qa_analysis.run)


@analysis_command(mc_analysis.MCConfig, flags={"max_questions": max_items("--max-questions")}, help=NEURONS_HELP)
def mc(
    config: mc_analysis.MCConfig,
    model: ModelOptions,
    out: Annotated[Path, out_option("mc.jsonl (per question), mc.json and figure")],
    neurons: OptNeuronsOpt = None,
    lang: QuestionLangOpt = None,
    data: Annotated[
        str | None, _data_option("question/options/answer lines", "li-lab/MMLU-ProX (config = --lang)", 86)
    ] = None,
) -> None:
    """Multiple choice (the option letter with the highest log-likelihood, or --scoring cyclic): accuracy
    per condition, its 95 % interval against chance, and the letters chosen."""
    _questions(config, model, out, neurons, lang, data, load_mc, mc_analysis.run)


@analysis_command(
    output_lang_analysis.OutputLangConfig, flags={"max_prompts": max_items("--max-prompts")}, help=NEURONS_HELP
)
def output_lang(
    config: output_lang_analysis.OutputLangConfig,
    model: ModelOptions,
    data: Annotated[
        Path,
        typer.Option(
            help="L2 prompts: the --lang field of a JSONL/TSV file (e.g. Tatoeba pairs "
            "or MKQA questions), or a .txt file with one prompt per line."
        ),
    ],
    out: Annotated[Path, out_option("output_lang.jsonl, output_lang.json and figure")],
    neurons: OptNeuronsOpt = None,
    lang: Annotated[str | None, lang_option("Prompt")] = None,
) -> None:
    """Language of greedy continuations of L2 prompts: normal, top-k deactivated (e.g. Type-2), random."""
    _sentences(config, model, data, out, neurons, lang, config.max_prompts, output_lang_analysis.run)


@analysis_command(
    logit_lens_analysis.LogitLensConfig,
    models="store",
    flags={"max_sentences": max_items("--max-sentences")},
    help=NEURONS_HELP,
)
def logit_lens(
    config: logit_lens_analysis.LogitLensConfig,
    model: ModelOptions,
    data: SentencesOpt,
    out: Annotated[Path, out_option("logit_lens.json and figure")],
    neurons: OptNeuronsOpt = None,
    lang: Annotated[str | None, lang_option("Sentence")] = None,
) -> None:
    """Logit lens: language share of the top tokens of final norm + unembedding on each layer's h^l."""
    _sentences(config, model, data, out, neurons, lang, config.max_sentences, logit_lens_analysis.run)
