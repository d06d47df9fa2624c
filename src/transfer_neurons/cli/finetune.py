"""`finetune`: train only the parameters of chosen neurons (or a baseline) and measure before / after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import finetune as finetune_analysis
from transfer_neurons.analyses.compare_methods import builtin_questions
from transfer_neurons.analyses.finetune import FinetuneBaseline
from transfer_neurons.analyses.finetune_eval import EvalSet
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import locked, prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.checks import finite, path_option, seed_option
from transfer_neurons.cli.common import (
    BootstrapOpt,
    DeviceOpt,
    DtypeOpt,
    KOpt,
    ModelOpt,
    NeuronsOpt,
    QuietOpt,
    echo_summary,
    neurons_lang,
    user_errors,
)
from transfer_neurons.data.pairs import read_pairs, read_sentences
from transfer_neurons.model.loading import load_model


@user_errors
def finetune(
    model: ModelOpt,
    neurons: NeuronsOpt,
    train: Annotated[
        Path,
        typer.Option(help="Text to train on: the L2 side of a JSONL/TSV pair file, or a .txt file (one per line)."),
    ],
    eval_data: Annotated[
        Path,
        typer.Option(
            "--eval",
            help="Held-out data: JSONL/TSV pairs (L2 and English perplexity, alignment) or a .txt file "
            "(L2 perplexity only).",
        ),
    ],
    out: Annotated[Path, path_option("Output folder for delta.safetensors, finetune.json and loss.png.")],
    top_k: Annotated[int, typer.Option(min=1, help="Train the top-k neurons of --neurons.")] = 100,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 200,
    lr: Annotated[float, typer.Option(callback=finite(), help="AdamW learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences per step.")] = 8,
    seed: Annotated[int, seed_option("the batch order, the random baseline, LoRA's init and the bootstrap")] = 0,
    baseline: Annotated[
        FinetuneBaseline | None,
        typer.Option(
            help="Train instead: random (as many random neurons per layer), lora (LoRA on the MLPs of the "
            "set's layers, rank matched to the parameter count) or full (every neuron of those layers)."
        ),
    ] = None,
    save_every: Annotated[int, typer.Option(min=0, help="Checkpoint every N steps (0: never).")] = 50,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in --out.")] = False,
    max_length: Annotated[int, typer.Option(min=2, help="Tokens per sentence at most (longer ones are cut).")] = 128,
    weight_decay: Annotated[float, typer.Option(callback=finite(), help="AdamW weight decay.")] = 0.0,
    lang: Annotated[str | None, typer.Option(help="L2 language. Default: the language of --neurons.")] = None,
    k: KOpt = 10,
    bootstrap: BootstrapOpt = 1000,
    qa: Annotated[
        bool, typer.Option(help="Also QA F1 before / after where the built-in set has --lang (slow).")
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune only the top-k neurons of a set (or a baseline with as many trainable parameters) on
    --train; L2 / English perplexity, alignment and QA on --eval before and after; writes the delta."""
    config = finetune_analysis.FinetuneConfig(
        top_k=top_k,
        baseline=baseline,
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        save_every=save_every,
        k=k,
        bootstrap=bootstrap,
        qa=qa,
    )
    neuron_set = read_neurons(neurons)
    neuron_set.check_top_k(top_k)
    lang = neurons_lang(neuron_set, lang)
    train_text = read_sentences(train, lang)
    pairs = None if eval_data.suffix.lower() == ".txt" else read_pairs(eval_data, lang)
    l2 = read_sentences(eval_data, lang) if pairs is None else pairs.l2
    questions = builtin_questions(lang, None) if qa else None
    data = EvalSet(lang, l2, pairs, questions)
    checkpoint = prepare_out_dir(out) / names.CHECKPOINT
    finetune_analysis.check_resume(checkpoint, resume)
    with locked(out) as out:
        lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
        finetune_analysis.check_inputs(lm, neuron_set, config, data)
        (out / names.MANIFEST).unlink(missing_ok=True)  # rewritten: not a complete result until saved
        result = finetune_analysis.run(lm, neuron_set, train_text, data, config, checkpoint, resume, progress=not quiet)
        result.save(out, {"model": model, **data_inputs(neurons=neuron_set.source, train=train, eval=eval_data)})
        checkpoint.unlink(missing_ok=True)
        echo_summary(result, out)
