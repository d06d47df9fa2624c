"""Every metric of a run folder as one tidy table: a standalone result folder or a whole study.

Each result folder is read through its Result class's `load` (chosen by the manifest's `command`),
so a folder whose files no longer match its manifest is refused, and its typed fields are
flattened into rows (step, analysis, lang, set, condition, metric, layer, value, ci_low, ci_high):
an estimate's 95% interval sits beside its value, its effect vs random and p on rows of their own
(`metric.effect_vs_random`, `metric.p_vs_random`), a random baseline's spread on `metric.sd`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs installed

from transfer_neurons.analyses import (
    ablate,
    compare_methods,
    detect,
    finetune,
    latent,
    logit_lens,
    mc,
    output_lang,
    overlap,
    qa,
    specificity,
    sweep,
)
from transfer_neurons.analyses.latent import PairCurves
from transfer_neurons.artifacts.io import read_json
from transfer_neurons.artifacts.names import MANIFEST
from transfer_neurons.errors import InputError
from transfer_neurons.metrics.latent import CURVES

COLUMNS = ["step", "analysis", "lang", "set", "condition", "metric", "layer", "value", "ci_low", "ci_high"]
NAN = float("nan")
# lang, set, condition, metric, layer, value, ci_low, ci_high
Row = tuple[str | None, str | None, str | None, str, int | None, float, float, float]


def _scalars(lang: str | None, subject: str | None, condition: str | None, values: Mapping[str, Any]) -> Iterator[Row]:
    """One row per number of `values` (flags count as 0 / 1), nested mappings as 'key.sub'; an
    estimate (`{"value", "ci", ...}`) is one row with its interval, its other numbers rows of their own
    (one without a value, like the mean score of no neuron, has no row)."""
    if "value" in values and values["value"] is None:
        values = {key: value for key, value in values.items() if key not in ("value", "ci")}
    if "value" in values:
        ci = values.get("ci") or (NAN, NAN)
        yield lang, subject, condition, "", None, float(values["value"]), float(ci[0]), float(ci[1])
        values = {key: value for key, value in values.items() if key not in ("value", "ci")}
    for key, value in values.items():
        if isinstance(value, Mapping):
            for row in _scalars(lang, subject, condition, value):
                yield (*row[:3], f"{key}.{row[3]}".rstrip("."), *row[4:])
        elif isinstance(value, int | float):  # bool included: flags count as 0 / 1
            yield lang, subject, condition, key, None, float(value), NAN, NAN


def _layers(
    lang: str | None, subject: str | None, condition: str | None, metric: str, values, low, high
) -> Iterator[Row]:
    """One row per layer of a curve, with its interval when it has one."""
    low = low or [NAN] * len(values)
    high = high or [NAN] * len(values)
    for layer, (v, lo, hi) in enumerate(zip(values, low, high, strict=True)):
        yield lang, subject, condition, metric, layer, float(v), float(lo), float(hi)


def _curves(lang: str | None, condition: str | None, curves: PairCurves) -> Iterator[Row]:
    """Every per-layer curve of one pair set, the centred gap included, with their intervals."""
    for metric in [*CURVES, "gap"]:
        values = curves.gap if metric == "gap" else getattr(curves, metric)
        yield from _layers(lang, None, condition, metric, values, curves.ci_low.get(metric), curves.ci_high.get(metric))


def _detect(r: detect.Detection) -> Iterator[Row]:
    """Per layer the top-n count and the highest score (NaN scores, e.g. LAPE's unscored neurons,
    left out); the set is the type, or the method for sets without one."""
    subject = r.neuron_type or str(r.method)
    counts = [0] * r.scores.shape[0]
    for layer, _, _ in r.top:
        counts[layer] += 1
    yield from _layers(r.lang, subject, None, "top_count", counts, None, None)
    for layer in r.layers:
        yield (
            r.lang,
            subject,
            None,
            "max_score",
            layer,
            float(r.scores[layer].nan_to_num(float("-inf")).max()),
            NAN,
            NAN,
        )
    yield r.lang, subject, None, "mean_top_score", None, sum(s for _, _, s in r.top) / len(r.top), NAN, NAN


def _latent(r: latent.LatentResult) -> Iterator[Row]:
    for lang, curves in r.pairs.items():
        yield from _curves(lang, None, curves)
        column = r.langs.index(lang)
        for layer, matrix in enumerate(r.centroid_similarity):
            yield lang, None, None, "centroid_similarity_en", layer, float(matrix[0, column]), NAN, NAN
        peak, middle = r.peaks[lang], r.middle_peak[lang]
        yield lang, None, None, "mknn_peak_layer", None, float(peak), NAN, NAN
        if middle is not None:
            yield from _scalars(
                lang, None, None, {"middle_peak": {"value": middle.value, "ci": middle.ci, "p": middle.p}}
            )


def _ablate(r: ablate.AblationResult) -> Iterator[Row]:
    for condition, curves in r.conditions.items():
        yield from _curves(r.lang, condition, curves)
    for condition, metrics in r.headline()["summary"].items():
        yield from _scalars(r.lang, None, condition, metrics)


def _specificity(r: specificity.SpecificityResult) -> Iterator[Row]:
    for name, s in r.sets.items():
        for labelling, comparison in s.labellings.items():
            for condition, summary in (("top", comparison.top), ("random", comparison.random)):
                yield from _scalars(s.lang, name, condition, {labelling: summary.to_json()})


def _overlap(r: overlap.OverlapResult) -> Iterator[Row]:
    for i, a in enumerate(r.labels):
        for j, b in enumerate(r.labels[i + 1 :], i + 1):
            yield None, f"{a} vs {b}", None, "jaccard", None, r.jaccard[i][j], NAN, NAN
            if r.chance_jaccard is not None:
                yield None, f"{a} vs {b}", None, "chance_jaccard", None, r.chance_jaccard[i][j], NAN, NAN
    for label, counts in r.layer_counts.items():
        yield from _layers(None, label, None, "top_count", counts, None, None)


def _qa(r: qa.QAResult) -> Iterator[Row]:
    for condition, scores in r.headline()["conditions"].items():
        yield from _scalars(r.lang, None, condition, scores)


def _mc(r: mc.MCResult) -> Iterator[Row]:
    for condition, scores in r.headline()["conditions"].items():
        yield from _scalars(r.lang, None, condition, scores)
    yield r.lang, None, None, "chance", None, r.chance, NAN, NAN


def _output_lang(r: output_lang.OutputLangResult) -> Iterator[Row]:
    for condition, values in r.headline()["conditions"].items():
        yield from _scalars(r.lang, None, condition, {f"share_{label}": v for label, v in values.items()})


def _logit_lens(r: logit_lens.LogitLensResult) -> Iterator[Row]:
    for condition, values in r.conditions.items():
        for label, curve in values.items():
            yield from _layers(r.lang, None, condition, f"share_{label}", curve.values, curve.ci_low, curve.ci_high)


def _sweep(r: sweep.SweepResult) -> Iterator[Row]:
    cells = {sweep.NORMAL: r.normal} | {sweep.condition_name(f, k): v for (f, k), v in r.cells.items()}
    for condition, values in cells.items():
        yield from ((r.lang, None, condition, f"share_{label}", None, v, NAN, NAN) for label, v in values.items())


def _methods(r: compare_methods.MethodsResult) -> Iterator[Row]:
    """Per method (the set column): its ablation per condition, then its other measures and overlaps."""
    for name, measures in r.methods.items():
        data = measures.to_json()
        for condition, metrics in data.pop("ablation").items():
            yield from _scalars(r.lang, name, condition, metrics)
        yield from _scalars(r.lang, name, None, data | {"jaccard": r.jaccard[name]})


def _finetune(r: finetune.FinetuneResult) -> Iterator[Row]:
    """The measures before and after (conditions), their paired change (condition `change`), the
    parameter counts and the loss of every step (`layer` holds the step)."""
    method = r.delta.method
    for condition, metrics in r.summary.items():
        yield from _scalars(r.lang, method, condition, {m: e.to_json() for m, e in metrics.items()})
    yield from _scalars(r.lang, method, "change", r.headline()["change"])
    yield from _scalars(r.lang, method, None, {"parameters": {k: v for k, v in r.parameters.items() if v is not None}})
    yield from ((r.lang, method, None, "loss", step, loss, NAN, NAN) for step, loss in enumerate(r.losses, 1))


READERS: dict[str, tuple[Callable[[Path], Any], Callable[[Any], Iterator[Row]]]] = {
    cls.command: (cls.load, rows)
    for cls, rows in (
        (detect.Detection, _detect),
        (latent.LatentResult, _latent),
        (ablate.AblationResult, _ablate),
        (specificity.SpecificityResult, _specificity),
        (overlap.OverlapResult, _overlap),
        (qa.QAResult, _qa),
        (mc.MCResult, _mc),
        (output_lang.OutputLangResult, _output_lang),
        (logit_lens.LogitLensResult, _logit_lens),
        (sweep.SweepResult, _sweep),
        (compare_methods.MethodsResult, _methods),
        (finetune.FinetuneResult, _finetune),
    )
}


def _command(folder: Path) -> str | None:
    try:
        manifest = read_json(folder / MANIFEST)
    except ValueError as exc:
        raise InputError(f"'{folder / MANIFEST}' is not valid JSON; rerun the command that writes it") from exc
    return manifest.get("command") if isinstance(manifest, dict) else None


def load_run(run: str | Path) -> pd.DataFrame:
    """Every metric of a run folder as one tidy DataFrame with the columns `step` (the result folder
    relative to `run`, '.' for a standalone result), `analysis` (the manifest's command), `lang`,
    `set` (the neuron set(s) a value describes: detect's type, specificity's set name, overlap's
    'a vs b', compare-methods' and finetune's method), `condition`, `metric`, `layer` (missing for
    scalars; a fine-tuning's loss curve puts the step there), `value` (float) and its 95% interval
    `ci_low` / `ci_high` (NaN where the number has none).

    `run` is one result folder (a command's --out) or a study folder: then every step folder under
    it is read (data steps and the study's own manifest hold no metrics and are skipped)."""
    run = Path(run)
    if not (run / MANIFEST).is_file():
        raise InputError(f"'{run}' holds no complete result (no {MANIFEST}); give a command's or a study's --out")
    folders = [run] if _command(run) in READERS else sorted(p.parent for p in run.rglob(MANIFEST) if p.parent != run)
    records = []
    for folder in folders:
        command = _command(folder)
        if command not in READERS:
            continue
        load, rows = READERS[command]
        step = folder.relative_to(run).as_posix()
        records += [(step, command, *row) for row in rows(load(folder))]
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table["layer"] = table["layer"].astype("Int64")
    for column in ("value", "ci_low", "ci_high"):
        table[column] = table[column].astype(float)
    return table
