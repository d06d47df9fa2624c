"""`specificity` and `overlap`: characterising neuron sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from transfer_neurons.choices import Baseline
from transfer_neurons.cli.common import (
    BaselineOpt,
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    app,
    langs_for,
    user_errors,
)
from transfer_neurons.errors import InputError


@app.command()
@user_errors
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
    from transfer_neurons.analyses.specificity import activation_stats, specificity_report
    from transfer_neurons.artifacts.io import prepare_out_dir, write_json, write_tensors
    from transfer_neurons.artifacts.manifest import data_inputs, write_manifest
    from transfer_neurons.artifacts.plots import grouped_bars
    from transfer_neurons.data.pairs import read_sentences
    from transfer_neurons.hooks.interventions import Intervention, _read_neurons_json, random_baseline
    from transfer_neurons.metrics import specificity as spec
    from transfer_neurons.model.loading import load_model

    codes = langs_for(data, langs)
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
@user_errors
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


