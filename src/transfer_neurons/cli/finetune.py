"""`finetune`: train only the parameters of chosen neurons (or a baseline) and measure before / after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.analyses import finetune as finetune_analysis
from transfer_neurons.analyses.compare_methods import builtin_questions
from transfer_neurons.analyses.finetune_eval import EvalSet
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import prepare_out_dir
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import read_neurons
from transfer_neurons.cli.common import NeuronsOpt, lang_option, neurons_lang, out_option
from transfer_neurons.cli.options import ModelOptions, analysis_command, run_command
from transfer_neurons.data.pairs import read_pairs, read_sentences
from transfer_neurons.model.loading import LoadedModel


@analysis_command(finetune_analysis.FinetuneConfig, models="base")
def finetune(
    config: finetune_analysis.FinetuneConfig,
    model: ModelOptions,
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
    out: Annotated[Path, out_option("delta.safetensors, finetune.json and loss.png")],
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in --out.")] = False,
    lang: Annotated[str | None, lang_option("L2")] = None,
) -> None:
    """Fine-tune only the top-k neurons of a set (or a baseline with as many trainable parameters) on
    --train; L2 / English perplexity, alignment and QA on --eval before and after; writes the delta."""
    neuron_set = read_neurons(neurons)
    neuron_set.check_top_k(config.top_k)
    lang = neurons_lang(neuron_set, lang)
    train_text = read_sentences(train, lang)
    pairs = None if eval_data.suffix.lower() == ".txt" else read_pairs(eval_data, lang)
    l2 = read_sentences(eval_data, lang) if pairs is None else pairs.l2
    questions = builtin_questions(lang, None) if config.qa else None
    data = EvalSet(lang, l2, pairs, questions)
    checkpoint = prepare_out_dir(out) / names.CHECKPOINT
    finetune_analysis.check_resume(checkpoint, resume)

    def compute(lm: LoadedModel) -> finetune_analysis.FinetuneResult:
        finetune_analysis.check_inputs(lm, neuron_set, config, data)
        (out / names.MANIFEST).unlink(missing_ok=True)  # rewritten: not a complete result until saved
        return finetune_analysis.run(
            lm, neuron_set, train_text, data, config, checkpoint, resume, progress=model.progress
        )

    run_command(out, model, compute, data_inputs(neurons=neuron_set.source, train=train, eval=eval_data))
    checkpoint.unlink(missing_ok=True)
