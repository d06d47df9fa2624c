"""`qa`, `mc`, `output-lang` and `logit-lens`: downstream effects of deactivation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from transfer_neurons.analyses import logit_lens as logit_lens_analysis
from transfer_neurons.analyses import mc as mc_analysis
from transfer_neurons.analyses import output_lang as output_lang_analysis
from transfer_neurons.analyses import qa as qa_analysis
from transfer_neurons.analyses.base import Config
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.cli.checks import path_option
from transfer_neurons.cli.common import (
    DEFAULT_LANGID,
    BaselineOpt,
    BaselineSeedsOpt,
    BatchOpt,
    BootstrapOpt,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    LangIdOpt,
    ModelOpt,
    OptNeuronsOpt,
    QuietOpt,
    SeedOpt,
    StoreDtypeOpt,
    StoreOpt,
    TopKDownstreamOpt,
    echo_summary,
    estimate_printer,
    language_identifier,
    max_items,
    neurons_lang,
    source_inputs,
    user_errors,
)
from transfer_neurons.data.mc import load_mc
from transfer_neurons.data.pairs import read_sentences
from transfer_neurons.data.qa import load_qa
from transfer_neurons.model.loading import load_model

PromptsBatchOpt = Annotated[int, typer.Option(min=1, help="Prompts per batch.")]
C = TypeVar("C", bound=Config)


def _config(cls: type[C], options: dict[str, Any], **given: Any) -> C:
    """The analysis config of a command's options, which are named like its fields (with the same
    defaults: tests/analyses/test_downstream.py checks it); `given` overrides options."""
    return cls(**{name: options[name] for name in cls.model_fields if name in options} | given)


def _neuron_set(neurons: Path | None, top_k: int) -> NeuronSet | None:
    """The neuron set of --neurons (checked against --top-k before the model loads), or None."""
    if neurons is None:
        return None
    neuron_set = read_neurons(neurons)
    neuron_set.check_top_k(top_k)
    return neuron_set


@user_errors
def qa(
    model: ModelOpt,
    out: Annotated[Path, path_option("Output folder for qa.jsonl (per question), qa.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Question language. Default: the language of --neurons.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Local JSONL (question/answers/lang lines, or MKQA records) or a hub id such as "
            "apple/mkqa. Default: the built-in set (104 questions in en/ja/ko/nl/it)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "train",
    max_questions: Annotated[int | None, max_items("--max-questions", "questions")] = None,
    shots: Annotated[int, typer.Option(min=0, max=2, help="Worked examples in the prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer budget in tokens.")] = 16,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (the paper: prompt).")] = Positions.prompt,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    batch_size: PromptsBatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generative QA (MKQA style, token F1 over aliases): normal, top-k deactivated, random baseline."""
    config = _config(qa_analysis.QAConfig, locals())
    neuron_set = _neuron_set(neurons, top_k)
    lang = neurons_lang(neuron_set, lang)
    items = load_qa(data, lang, config.max_questions, config.split)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(model, device=device, dtype=dtype, progress=not quiet, delta=delta)
        result = qa_analysis.run(lm, items, neuron_set, config, estimate_printer(quiet))
        result.save(out, source_inputs(data, neuron_set) | lm.delta_inputs())
        echo_summary(result, out)


@user_errors
def mc(
    model: ModelOpt,
    out: Annotated[Path, path_option("Output folder for mc.jsonl (per question), mc.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Question language. Default: the language of --neurons.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Local JSONL (question/options/answer lines) or a hub id such as li-lab/MMLU-ProX "
            "(config = --lang). Default: the built-in set (86 questions in en/ja/ko/nl/it)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "test",
    max_questions: Annotated[int | None, max_items("--max-questions", "questions")] = None,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (the paper: prompt).")] = Positions.prompt,
    scoring: Annotated[
        mc_analysis.Scoring,
        typer.Option(
            help="'letter': the option letter with the highest log-likelihood; 'cyclic': each option's letter "
            "log-likelihood averaged over the n cyclic shifts of the option order (a fixed letter preference "
            "cancels; n times the prompts)."
        ),
    ] = mc_analysis.Scoring.letter,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    batch_size: PromptsBatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Multiple choice (the option letter with the highest log-likelihood, or --scoring cyclic): accuracy
    per condition, its 95 % interval against chance, and the letters chosen."""

    config = _config(mc_analysis.MCConfig, locals())
    neuron_set = _neuron_set(neurons, top_k)
    lang = neurons_lang(neuron_set, lang)
    items = load_mc(data, lang, config.max_questions, config.split)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(model, device=device, dtype=dtype, progress=not quiet, delta=delta)
        result = mc_analysis.run(lm, items, neuron_set, config, estimate_printer(quiet))
        result.save(out, source_inputs(data, neuron_set) | lm.delta_inputs())
        echo_summary(result, out)


@user_errors
def output_lang(
    model: ModelOpt,
    data: Annotated[
        Path,
        typer.Option(
            help="L2 prompts: the --lang field of a JSONL/TSV file (e.g. Tatoeba pairs "
            "or MKQA questions), or a .txt file with one prompt per line."
        ),
    ],
    out: Annotated[Path, path_option("Output folder for output_lang.jsonl, output_lang.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Prompt language. Default: the language of --neurons.")] = None,
    max_prompts: Annotated[int | None, max_items("--max-prompts", "prompts")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate per prompt.")] = 24,
    positions: Annotated[
        Positions, typer.Option(help="Where to deactivate; 'all' includes the generated tokens.")
    ] = Positions.all,
    langid_langs: LangIdOpt = DEFAULT_LANGID,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    batch_size: PromptsBatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Language of greedy continuations of L2 prompts: normal, top-k deactivated (e.g. Type-2), random."""
    neuron_set = _neuron_set(neurons, top_k)
    lang = neurons_lang(neuron_set, lang)
    langs = language_identifier(langid_langs, lang).langs
    config = _config(output_lang_analysis.OutputLangConfig, locals(), langid_langs=langs)
    prompts = read_sentences(data, lang, config.max_prompts)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(model, device=device, dtype=dtype, progress=not quiet, delta=delta)
        result = output_lang_analysis.run(lm, prompts, neuron_set, config, lang, estimate_printer(quiet))
        result.save(
            out, data_inputs(data=data, neurons=None if neuron_set is None else neuron_set.source) | lm.delta_inputs()
        )
        echo_summary(result, out)


@user_errors
def logit_lens(
    model: ModelOpt,
    data: Annotated[Path, typer.Option(help="L2 sentences: the --lang field of a JSONL/TSV file, or a .txt file.")],
    out: Annotated[Path, path_option("Output folder for logit_lens.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Sentence language. Default: the language of --neurons.")] = None,
    tokens: Annotated[int, typer.Option(min=1, help="Top tokens per layer whose language is counted.")] = 10,
    max_sentences: Annotated[int | None, max_items("--max-sentences", "sentences")] = None,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (representation: last).")] = Positions.last,
    langid_langs: LangIdOpt = DEFAULT_LANGID,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    baseline_seeds: BaselineSeedsOpt = 5,
    bootstrap: BootstrapOpt = 1000,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    delta: DeltaOpt = None,
    store: StoreOpt = None,
    store_dtype: StoreDtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Logit lens: language share of the top tokens of final norm + unembedding on each layer's h^l."""
    neuron_set = _neuron_set(neurons, top_k)
    lang = neurons_lang(neuron_set, lang)
    langs = language_identifier(langid_langs, lang).langs
    config = _config(logit_lens_analysis.LogitLensConfig, locals(), langid_langs=langs)
    sentences = read_sentences(data, lang, config.max_sentences)
    with locked(prepare_out_dir(out)) as out:
        lm = load_model(
            model, device=device, dtype=dtype, progress=not quiet, store=store, store_dtype=store_dtype, delta=delta
        )
        result = logit_lens_analysis.run(lm, sentences, neuron_set, config, lang, progress=not quiet)  # checks --tokens
        result.save(
            out, data_inputs(data=data, neurons=None if neuron_set is None else neuron_set.source) | lm.delta_inputs()
        )
        echo_summary(result, out)
