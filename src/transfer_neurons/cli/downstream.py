"""`qa`, `mc`, `output-lang` and `logit-lens`: downstream effects of deactivation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.cli.common import (
    BaselineOpt,
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    LangIdOpt,
    ModelOpt,
    OptNeuronsOpt,
    QuietOpt,
    SeedOpt,
    TopKDownstreamOpt,
    app,
    language_identifier,
    neurons_lang,
    source_inputs,
    user_errors,
)
from transfer_neurons.errors import InputError


def _open_downstream(model: str, out: Path, neurons: Path | None, top_k: int, positions: Positions,
                     baseline: Baseline, seed: int, device: str, dtype: str, quiet: bool):  # fmt: skip
    """Check --out, load the model and build the conditions: normal, and with --neurons its top-k
    deactivated plus a random baseline of the same shape. Returns (out, model, conditions)."""
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.hooks.interventions import deactivation_conditions
    from transfer_neurons.model.loading import load_model

    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    if neurons is None:
        return out, lm, {"normal": None}
    conditions = deactivation_conditions(neurons, top_k, lm.num_layers, lm.mlp_width, positions.value,
                                         baseline.value, seed)  # fmt: skip
    return out, lm, conditions


def _close_downstream(out: Path, name: str, command: str, conditions: dict, *, model: str, seed: int, settings: dict,
                      results: dict, inputs: dict, start: float, rows: list[dict] | None = None) -> None:  # fmt: skip
    """Write NAME.jsonl (one row per item), intervention.json and baseline.json, NAME.json (settings
    and results) and, last, the manifest."""
    from transfer_neurons.artifacts.io import write_json, write_jsonl
    from transfer_neurons.artifacts.manifest import write_manifest

    if rows is not None:
        write_jsonl(out / f"{name}.jsonl", rows)
    if conditions.get("deactivated") is not None:
        conditions["deactivated"].save(out / "intervention.json")
        conditions["random"].save(out / "baseline.json")
    write_json(out / f"{name}.json", {"model": model, **settings, "seed": seed, **results})
    write_manifest(out, command, model=model, seed=seed, inputs=inputs, settings=settings,
                   timings_s={"total": time.perf_counter() - start})  # fmt: skip


@app.command()
@user_errors
def qa(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder for qa.jsonl (per question), qa.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Question language. Default: the language of --neurons.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Local JSONL (question/answers/lang lines, or MKQA records) or a hub id such as "
            "apple/mkqa. Default: the built-in set (104 questions in en/ja/ko/nl/it)."
        ),
    ] = None,  # fmt: skip
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "train",
    max_questions: Annotated[int | None, typer.Option(min=1, help="Use at most this many questions.")] = None,
    shots: Annotated[int, typer.Option(min=0, max=2, help="Worked examples in the prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer budget in tokens.")] = 16,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (the paper: prompt).")] = Positions.prompt,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Generative QA (MKQA style, token F1 over aliases): normal, top-k deactivated, random baseline."""
    from transfer_neurons.analyses.base import summarize_rows
    from transfer_neurons.analyses.qa import qa_study
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.qa import load_qa, template_lang

    lang = neurons_lang(neurons, lang)
    items = load_qa(data, lang, max_questions, split)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    start = time.perf_counter()
    rows = qa_study(lm, items, conditions, shots, max_new_tokens, batch_size)
    summary = summarize_rows(rows, ("f1", "em"))
    settings = {"lang": lang, "top_k": top_k if neurons else None, "positions": positions.value, "shots": shots,
                "max_new_tokens": max_new_tokens, "template": template_lang(lang), "split": split,
                "max_questions": max_questions, "baseline": baseline.value, "batch_size": batch_size}  # fmt: skip
    grouped_bars({name: {"F1": s["f1"], "exact match": s["em"]} for name, s in summary.items()},
                 f"QA ({lang}, {len(items)} questions)", "score", out / "qa.png", (0, 1))  # fmt: skip
    _close_downstream(out, "qa", "qa", conditions, model=model, seed=seed, settings=settings,
                      results={"conditions": summary}, inputs=source_inputs(data, neurons), start=start,
                      rows=rows)  # fmt: skip
    for name, s in summary.items():
        typer.echo(f"{name:>11}: F1 {s['f1']:.3f}, exact match {s['em']:.3f} ({s['n']} questions)")
    typer.echo(f"wrote {out}/qa.jsonl, qa.json, qa.png")


@app.command()
@user_errors
def mc(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder for mc.jsonl (per question), mc.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Question language. Default: the language of --neurons.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Local JSONL (question/options/answer lines) or a hub id such as li-lab/MMLU-ProX "
            "(config = --lang). Default: the built-in set (86 questions in en/ja/ko/nl/it)."
        ),
    ] = None,  # fmt: skip
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "test",
    max_questions: Annotated[int | None, typer.Option(min=1, help="Use at most this many questions.")] = None,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (the paper: prompt).")] = Positions.prompt,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Multiple choice (the option letter with the highest log-likelihood): accuracy per condition."""
    from transfer_neurons.analyses.base import summarize_rows
    from transfer_neurons.analyses.mc import mc_study
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.mc import letter_token_ids, load_mc, template_lang

    lang = neurons_lang(neurons, lang)
    items = load_mc(data, lang, max_questions, split)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    start = time.perf_counter()
    rows = mc_study(lm, items, conditions, batch_size)
    summary = summarize_rows(rows, ("correct",))
    n_options = [len(item.options) for item in items]
    chance = sum(1 / n for n in n_options) / len(items)
    settings = {"lang": lang, "top_k": top_k if neurons else None, "positions": positions.value,
                "template": template_lang(lang), "letter_form": letter_token_ids(lm.tokenizer, max(n_options))[1],
                "split": split, "max_questions": max_questions, "baseline": baseline.value,
                "batch_size": batch_size}  # fmt: skip
    accuracy = {name: {"accuracy": s["correct"], "n": s["n"]} for name, s in summary.items()}
    grouped_bars({name: {"accuracy": s["accuracy"], "chance": chance} for name, s in accuracy.items()},
                 f"Multiple choice ({lang}, {len(items)} questions)", "accuracy", out / "mc.png", (0, 1))  # fmt: skip
    _close_downstream(out, "mc", "mc", conditions, model=model, seed=seed, settings=settings,
                      results={"chance": chance, "conditions": accuracy}, inputs=source_inputs(data, neurons),
                      start=start, rows=rows)  # fmt: skip
    for name, s in accuracy.items():
        typer.echo(f"{name:>11}: accuracy {s['accuracy']:.3f} ({s['n']} questions, chance {chance:.3f})")
    typer.echo(f"wrote {out}/mc.jsonl, mc.json, mc.png")


@app.command("output-lang")
@user_errors
def output_lang(
    model: ModelOpt,
    data: Annotated[
        Path,
        typer.Option(
            help="L2 prompts: the --lang field of a JSONL/TSV file (e.g. Tatoeba pairs "
            "or MKQA questions), or a .txt file with one prompt per line."
        ),
    ],  # fmt: skip
    out: Annotated[Path, typer.Option(help="Output folder for output_lang.jsonl, output_lang.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Prompt language. Default: the language of --neurons.")] = None,
    max_prompts: Annotated[int, typer.Option(min=1, help="Use at most this many prompts.")] = 100,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate per prompt.")] = 24,
    positions: Annotated[
        Positions, typer.Option(help="Where to deactivate; 'all' includes the generated tokens.")
    ] = Positions.all,
    langid_langs: LangIdOpt = "en,ja,ko,nl,it",
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Language of greedy continuations of L2 prompts: normal, top-k deactivated (e.g. Type-2), random."""
    from transfer_neurons.analyses.output_lang import output_language_study
    from transfer_neurons.artifacts.manifest import data_inputs
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.pairs import read_sentences

    lang = neurons_lang(neurons, lang)
    identifier = language_identifier(langid_langs, lang)
    prompts = read_sentences(data, lang, max_prompts)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    start = time.perf_counter()
    rows, summary = output_language_study(lm, prompts, conditions, language_identifier, lang, max_new_tokens, batch_size)
    settings = {"lang": lang, "top_k": top_k if neurons else None, "positions": positions.value,
                "max_new_tokens": max_new_tokens, "n_prompts": len(prompts), "baseline": baseline.value,
                "langid": {"library": "py3langid", "langs": list(identifier.langs or ["all"])},
                "batch_size": batch_size}  # fmt: skip
    grouped_bars(summary, f"Language of continuations of {len(prompts)} {lang} prompts", "share of outputs",
                 out / "output_lang.png", (0, 1))  # fmt: skip
    _close_downstream(out, "output_lang", "output-lang", conditions, model=model, seed=seed, settings=settings,
                      results={"conditions": summary}, inputs=data_inputs(data=data, neurons=neurons), start=start,
                      rows=rows)  # fmt: skip
    for name, s in summary.items():
        typer.echo(f"{name:>11}: " + ", ".join(f"{k} {v:.1%}" for k, v in s.items()))
    typer.echo(f"wrote {out}/output_lang.jsonl, output_lang.json, output_lang.png")


@app.command("logit-lens")
@user_errors
def logit_lens(
    model: ModelOpt,
    data: Annotated[Path, typer.Option(help="L2 sentences: the --lang field of a JSONL/TSV file, or a .txt file.")],
    out: Annotated[Path, typer.Option(help="Output folder for logit_lens.json and figure.")],
    neurons: OptNeuronsOpt = None,
    top_k: TopKDownstreamOpt = 1000,
    lang: Annotated[str | None, typer.Option(help="Sentence language. Default: the language of --neurons.")] = None,
    tokens: Annotated[int, typer.Option(min=1, help="Top tokens per layer whose language is counted.")] = 10,
    max_sentences: Annotated[int, typer.Option(min=1, help="Use at most this many sentences.")] = 100,
    positions: Annotated[Positions, typer.Option(help="Where to deactivate (representation: last).")] = Positions.last,
    langid_langs: LangIdOpt = "en,ja,ko,nl,it",
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Logit lens: language share of the top tokens of final norm + unembedding on each layer's h^l."""
    from transfer_neurons.analyses.logit_lens import logit_lens_tokens, token_language_shares
    from transfer_neurons.artifacts.manifest import data_inputs
    from transfer_neurons.artifacts.plots import layer_curves
    from transfer_neurons.data.pairs import read_sentences

    lang = neurons_lang(neurons, lang)
    identifier = language_identifier(langid_langs, lang)
    sentences = read_sentences(data, lang, max_sentences)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    if tokens > vocab:
        raise InputError(f"--tokens {tokens} exceeds the vocabulary size {vocab}")
    start = time.perf_counter()
    curves = {}
    for name, intervention in conditions.items():
        top = logit_lens_tokens(lm, sentences, tokens, intervention, batch_size, progress=not quiet)
        curves[name] = token_language_shares(lm.tokenizer, top, language_identifier, lang)
    settings = {"lang": lang, "tokens": tokens, "top_k": top_k if neurons else None, "positions": positions.value,
                "n_sentences": len(sentences), "baseline": baseline.value,
                "langid": {"library": "py3langid", "langs": list(identifier.langs or ["all"])}}  # fmt: skip
    lines = {f"{name}: {key}": values[key] for name, values in curves.items() for key in (lang, "en")}
    layer_curves(lines, f"Logit lens: language of the top-{tokens} tokens ({lang} inputs)", "share of tokens",
                 out / "logit_lens.png")  # fmt: skip
    _close_downstream(out, "logit_lens", "logit-lens", conditions, model=model, seed=seed, settings=settings,
                      results={"conditions": curves}, inputs=data_inputs(data=data, neurons=neurons),
                      start=start)  # fmt: skip
    for name, values in curves.items():
        peak = max(range(len(values[lang])), key=values[lang].__getitem__)
        typer.echo(f"{name:>11}: {lang} share peaks at layer {peak} ({values[lang][peak]:.1%}); last layer "
                   f"{lang} {values[lang][-1]:.1%}, en {values['en'][-1]:.1%}")  # fmt: skip
    typer.echo(f"wrote {out}/logit_lens.json, logit_lens.png")


