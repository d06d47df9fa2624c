"""Several models side by side: `models.json`, figures over relative depth and `report.html` from
finished single-model study runs (a study of several models writes them at its top level,
`transfer-neurons compare` from any finished runs).

Each run is read through its steps' typed Results (the steps its manifest lists, each folder named
after its analysis command: `latent`, `detect/<lang>/<type>`, `ablate/<lang>`, `specificity`), so
a damaged step is refused. A step the run's manifest lists but that is gone is an error; an
analysis the run's config left out (e.g. `ablate.enabled: false`) is shown as "–" (null in
models.json). Layer `l` of a model with `L` layers sits at relative depth `l / L`, so models of
different depth share one axis. Languages present in only some runs are shown for those.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_neurons.analyses.ablate import AblationResult
from transfer_neurons.analyses.detect import Detection
from transfer_neurons.analyses.latent import LatentResult, PairCurves
from transfer_neurons.analyses.specificity import SpecificityResult
from transfer_neurons.artifacts import names, templates
from transfer_neurons.artifacts.io import atomic_path, file_digest, locked, write_json
from transfer_neurons.artifacts.manifest import write_manifest
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.errors import InputError
from transfer_neurons.metrics.uncertainty import Estimate
from transfer_neurons.study.compare_plots import Line, depth_panels
from transfer_neurons.study.config import model_slugs
from transfer_neurons.study.report import Compared, data_uri, eta2_cells

COMPARED: dict[str, Callable[[Path], Result]] = {  # a step folder's analysis command -> its Result's load
    cls.command: cls.load for cls in (LatentResult, Detection, AblationResult, SpecificityResult)
}
CURVES = {  # curve -> (figure title, axis label)
    "mknn": ("Mutual kNN of parallel en / L2 states", "mutual kNN"),
    "gap": ("Centred parallel minus non-parallel similarity", "cosine gap"),
}
METRICS = {"mean_mknn": "mean mutual kNN", "mean_gap": "mean centred parallel minus non-parallel similarity"}


@dataclass
class ModelRun:
    """The compared Results of one finished single-model study run."""

    name: str  # the model, as the run names it
    folder: Path
    latent: LatentResult | None = None
    detections: list[Detection] = field(default_factory=list)
    ablations: dict[str, AblationResult] = field(default_factory=dict)  # lang -> result
    specificity: SpecificityResult | None = None

    def add(self, result: Result) -> None:
        if isinstance(result, LatentResult):
            self.latent = result
        elif isinstance(result, Detection):
            self.detections.append(result)
        elif isinstance(result, AblationResult):
            self.ablations[result.lang] = result
        elif isinstance(result, SpecificityResult):
            self.specificity = result

    @property
    def num_layers(self) -> int | None:
        """The model's layer count, from any compared result of the run (None without one)."""
        if self.latent is not None:
            return self.latent.layers
        if self.ablations:
            return next(iter(self.ablations.values())).layers
        if self.detections:
            return int(self.detections[0].scores.shape[0])
        if self.specificity is not None:
            return int(next(iter(self.specificity.eta2.values())).shape[0])
        return None

    @property
    def languages(self) -> list[str]:
        """Every language a compared result covers, in the order they first appear."""
        found = [*(self.latent.pairs if self.latent else []), *(d.lang for d in self.detections), *self.ablations]
        found += [s.lang for s in self.specificity.sets.values()] if self.specificity else []
        return list(dict.fromkeys(found))


def read_run(folder: Path) -> ModelRun:
    """The compared Results of a finished single-model study run; InputError naming the folder and
    what is missing when it is not one."""
    if not (folder / names.MANIFEST).is_file():
        what = "no such folder" if not folder.is_dir() else f"no {names.MANIFEST}"
        hint = "finish it with `transfer-neurons run`, or give a finished run"
        raise InputError(f"'{folder}' is not a finished study run ({what}); {hint}")
    manifest = read_manifest(folder)
    if manifest.get("command") != "run":
        command = manifest.get("command")
        raise InputError(f"'{folder}' holds a '{command}' result, not a study run (transfer-neurons run)")
    if manifest.get("models"):
        folders = ", ".join(str(folder / entry["run"]) for entry in manifest["models"])
        raise InputError(f"'{folder}' is a study of several models; give its model folders ({folders})")
    run = ModelRun(str(manifest.get("model")), folder)
    for step in manifest.get("steps") or {}:
        load = COMPARED.get(step.split("/")[0])
        if load is None:
            continue
        if not (folder / step / names.MANIFEST).is_file():
            raise InputError(
                f"'{folder}' misses its step '{step}' (listed in its {names.MANIFEST}); rerun `transfer-neurons run`"
            )
        run.add(load(folder / step))
    if run.num_layers is None:
        raise InputError(f"'{folder}' holds none of the compared analyses ({', '.join(COMPARED)})")
    return run


def _curve(curves: PairCurves, name: str) -> dict[str, Any]:
    """One latent curve with its 95% bounds per layer (null without bootstrap)."""
    band = curves.band(name)
    values = curves.gap if name == "gap" else getattr(curves, name)
    return {"value": values, "ci_low": band[0] if band else None, "ci_high": band[1] if band else None}


def _latent_json(latent: LatentResult | None, lang: str) -> dict[str, Any] | None:
    """The mutual-kNN and centred-gap curves of a language, with the peak's layer and depth."""
    if latent is None or lang not in latent.pairs:
        return None
    peak = latent.peaks[lang]
    return {
        "n": latent.n_pairs(lang),
        "mknn_peak": {"layer": peak, "depth": peak / latent.layers},
        **{name: _curve(latent.pairs[lang], name) for name in CURVES},
    }


def _top_layers_json(detections: list[Detection]) -> dict[str, Any]:
    """Per detected set (its type): the share of its top-n in each layer."""
    headlines = {detection.label: detection.headline() for detection in detections}
    return {
        label: {"top_n": h["top_n"], "share": [n / h["top_n"] for n in h["per_layer"]]}
        for label, h in headlines.items()
    }


def _specificity_json(specificity: SpecificityResult | None, lang: str) -> dict[str, Any] | None:
    """Per set of the language (its type): top-n vs random eta^2 summaries, labelling 'target'."""
    if specificity is None:
        return None
    headline = specificity.headline()
    return {s.neuron_type or name: headline[name] for name, s in specificity.sets.items() if s.lang == lang} or None


def model_json(run: ModelRun, label: str, out: Path) -> dict[str, Any]:
    """One model's entry of models.json: per language the mutual-kNN and centred-gap curves, the
    layer distribution of each type's top-n, the ablation summary and the specificity shares."""
    num_layers = run.num_layers
    assert num_layers is not None  # read_run refuses a run without one
    languages = {
        lang: {
            "latent": _latent_json(run.latent, lang),
            "top_layers": _top_layers_json([d for d in run.detections if d.lang == lang]),
            "ablation": None if lang not in run.ablations else run.ablations[lang].headline(),
            "specificity": _specificity_json(run.specificity, lang),
        }
        for lang in run.languages
    }
    return {
        "name": run.name,
        "label": label,
        "run": Path(os.path.relpath(run.folder.resolve(), out.resolve())).as_posix(),
        "num_layers": num_layers,
        "depth": [layer / num_layers for layer in range(num_layers)],
        "languages": languages,
    }


def read_models(runs: list[Path], out: Path) -> list[dict[str, Any]]:
    """The models.json entries of `runs` (relative to `out`); InputError, before anything is written,
    for fewer than two runs, a run given twice, `out` being one of them, or a run that is not a
    finished single-model study run."""
    if len(runs) < 2:
        raise InputError(f"compare needs at least two finished runs; got {len(runs)}")
    resolved = [run.resolve() for run in runs]
    for number, run in enumerate(resolved):
        if run in resolved[:number]:
            raise InputError(f"run '{runs[number]}' is given twice")
    if out.resolve() in resolved:
        raise InputError(f"the output folder '{out}' is one of the runs; choose another --out")
    read = [read_run(run) for run in runs]
    return [model_json(run, label, out) for run, label in zip(read, model_slugs([r.name for r in read]), strict=True)]


def write_comparison(models: list[dict[str, Any]], out: Path) -> list[str]:
    """models.json, the figures and report.html into `out`; the names of the files written."""
    write_json(out / names.MODELS, {"schema_version": names.SCHEMA_VERSION, "models": models})
    figures = _figures(models, out)
    html = templates.render(
        "compare.html",
        models=models,
        languages=_languages(models),
        peaks=_peak_rows(models),
        ablations={metric: _ablation_rows(models, metric) for metric in METRICS},
        metric_titles=METRICS,
        specificity=_specificity_rows(models),
        curves=[data_uri(out / name) for name in figures if name != names.MODELS_LAYERS_FIGURE],
        layers=data_uri(out / names.MODELS_LAYERS_FIGURE) if names.MODELS_LAYERS_FIGURE in figures else None,
    )
    with atomic_path(out / names.REPORT) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return [names.MODELS, *figures, names.REPORT]


def compare_runs(runs: list[Path], out: Path) -> Path:
    """`transfer-neurons compare`: the comparison of finished single-model study runs written into
    `out` (models.json, figures, report.html and manifest.json last; every run is read before
    anything is written, and `out` is locked meanwhile); the report's path."""
    models = read_models(runs, out)
    with locked(out):
        (out / names.MANIFEST).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
        files = write_comparison(models, out)
        write_manifest(
            out,
            "compare",
            runs=[str(run) for run in runs],
            models=[{"name": m["name"], "run": m["run"]} for m in models],
            files={name: file_digest(out / name) for name in files},
        )
    return out / names.REPORT


def _languages(models: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(lang for m in models for lang in m["languages"]))


def _figures(models: list[dict[str, Any]], out: Path) -> list[str]:
    """The curves per language and the layer distributions per type over relative depth; the names
    of the figures drawn (none when no model has the data)."""
    written = []
    for name, figure in (("mknn", names.MODELS_MKNN_FIGURE), ("gap", names.MODELS_GAP_FIGURE)):
        panels: dict[str, dict[str, list[Line]]] = {}
        for m in models:
            for lang, entry in m["languages"].items():
                if entry["latent"] is not None:
                    curve = entry["latent"][name]
                    band = None if curve["ci_low"] is None else (curve["ci_low"], curve["ci_high"])
                    panels.setdefault(f"en-{lang}", {})[m["label"]] = [Line(m["depth"], curve["value"], band)]
        if panels:
            title, ylabel = CURVES[name]
            depth_panels(panels, f"{title} over relative depth", ylabel, out / figure, "95% bands over the test pairs")
            written.append(figure)
    layers: dict[str, dict[str, list[Line]]] = {}
    for m in models:
        per_type: dict[str, list[list[float]]] = {}
        for entry in m["languages"].values():
            for neuron_type, dist in entry["top_layers"].items():
                per_type.setdefault(neuron_type, []).append([share * m["num_layers"] for share in dist["share"]])
        for neuron_type, densities in per_type.items():
            mean = [sum(column) / len(column) for column in zip(*densities, strict=True)]
            thin = [Line(m["depth"], d, thin=True) for d in densities] if len(densities) > 1 else []
            layers.setdefault(neuron_type, {})[m["label"]] = [Line(m["depth"], mean), *thin]
    if layers:
        depth_panels(
            layers,
            "Layer distribution of each type's top-n over relative depth",
            "share of the top-n per layer x L (1 = uniform)",
            out / names.MODELS_LAYERS_FIGURE,
            "thick: mean over languages; thin: each language",
        )
        written.append(names.MODELS_LAYERS_FIGURE)
    return written


def _peak_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per language and model: where mutual kNN peaks, as a layer (with its interval) and a depth."""
    rows = []
    for lang in _languages(models):
        for m in models:
            latent = m["languages"].get(lang, {}).get("latent")
            if latent is None:
                continue
            peak = latent["mknn_peak"]
            rows.append(
                {
                    "lang": lang,
                    "model": m["label"],
                    "n": latent["n"],
                    "layer": f"{peak['layer']} of {m['num_layers']}",
                    "depth": peak["depth"],
                    "value": latent["mknn"]["value"][peak["layer"]],
                }
            )
    return rows


def _ablation_rows(models: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per language and model (models side by side): normal, deactivated, random, the effect
    vs random and its p of `metric`; '–' where a run has no ablation."""
    rows = []
    for lang in _languages(models):
        for m in models:
            if lang not in m["languages"]:
                continue
            ablation = m["languages"][lang]["ablation"]
            row: dict[str, Any] = {"lang": lang, "model": m["label"], "n": "–", "top_k": "–"}
            if ablation is None:
                row |= dict.fromkeys(("normal", "deactivated", "random", "effect", "p"), "–")
            else:
                estimates = {c: Estimate.from_json(e[metric]) for c, e in ablation["summary"].items()}
                row |= {"n": ablation["n_pairs"], "top_k": ablation["top_k"], **vars(Compared.of(estimates))}
            rows.append(row)
    return rows


def _specificity_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per language, model and neuron type: the share with eta^2 > 0.1 and the mean eta^2 of
    the top-n vs the random baseline; '–' where a run has no specificity."""
    rows = []
    for lang in _languages(models):
        for m in models:
            if lang not in m["languages"]:
                continue
            sets = m["languages"][lang]["specificity"]
            if sets is None:
                rows.append({"lang": lang, "model": m["label"], "type": "–", "n": "–", "cells": ["–"] * 6})
                continue
            for neuron_type, summary in sets.items():
                cells = eta2_cells(summary)
                rows.append(
                    {"lang": lang, "model": m["label"], "type": neuron_type, "n": summary["top"]["n"], "cells": cells}
                )
    return rows
