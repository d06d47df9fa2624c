"""Every metric of a run folder as one tidy table: a standalone result folder or a whole study.

Each result folder is read through its Result class's `load` (chosen by the manifest's `command`),
so a folder whose files no longer match its manifest is refused, and its typed fields are
flattened into rows (step, analysis, lang, set, condition, metric, layer, value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs installed

from transfer_neurons.analyses import (
    ablate,
    detect,
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

COLUMNS = ["step", "analysis", "lang", "set", "condition", "metric", "layer", "value"]
Row = tuple[str | None, str | None, str | None, str, int | None, float]  # lang, set, condition, metric, layer, value


def _scalars(lang: str | None, subject: str | None, condition: str | None, values: Mapping[str, Any]) -> Iterator[Row]:
    """One row per number of `values` (flags count as 0 / 1), nested mappings as 'key.sub'."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            inner = _scalars(lang, subject, condition, value)
            yield from ((lang, subject, condition, f"{key}.{metric}", None, v) for _, _, _, metric, _, v in inner)
        elif isinstance(value, int | float):
            yield lang, subject, condition, key, None, float(value)


def _curves(lang: str | None, condition: str | None, curves: PairCurves) -> Iterator[Row]:
    """Every per-layer curve of one pair set, the centred gap included."""
    per_layer = {f.name: getattr(curves, f.name) for f in fields(curves)} | {"gap": curves.gap}
    for metric, values in per_layer.items():
        yield from ((lang, None, condition, metric, layer, v) for layer, v in enumerate(values))


def _detect(r: detect.Detection) -> Iterator[Row]:
    counts = [0] * r.scores.shape[0]
    for layer, _, _ in r.top:
        counts[layer] += 1
    yield from ((r.lang, r.kind, None, "top_count", layer, c) for layer, c in enumerate(counts))
    for layer in r.layers:
        yield r.lang, r.kind, None, "max_score", layer, float(r.scores[layer].max())
    yield r.lang, r.kind, None, "mean_top_score", None, sum(s for _, _, s in r.top) / len(r.top)


def _latent(r: latent.LatentResult) -> Iterator[Row]:
    for lang, curves in r.pairs.items():
        yield from _curves(lang, None, curves)
        column = r.langs.index(lang)
        for layer, matrix in enumerate(r.centroid_similarity):
            yield lang, None, None, "centroid_similarity_en", layer, float(matrix[0, column])


def _ablate(r: ablate.AblationResult) -> Iterator[Row]:
    for condition, curves in r.conditions.items():
        yield from _curves(r.lang, condition, curves)
    for condition, summary in r.summary.items():
        yield from _scalars(r.lang, None, condition, asdict(summary))


def _specificity(r: specificity.SpecificityResult) -> Iterator[Row]:
    for name, s in r.sets.items():
        for labelling, comparison in s.labellings.items():
            for condition, summary in (("top", comparison.top), ("random", comparison.random)):
                yield from _scalars(s.lang, name, condition, {labelling: summary.to_json()})


def _overlap(r: overlap.OverlapResult) -> Iterator[Row]:
    for i, a in enumerate(r.labels):
        for j, b in enumerate(r.labels[i + 1 :], i + 1):
            yield None, f"{a} vs {b}", None, "jaccard", None, r.jaccard[i][j]
            if r.chance_jaccard is not None:
                yield None, f"{a} vs {b}", None, "chance_jaccard", None, r.chance_jaccard[i][j]
    for label, counts in r.layer_counts.items():
        yield from ((None, label, None, "top_count", layer, c) for layer, c in enumerate(counts))


def _qa(r: qa.QAResult) -> Iterator[Row]:
    for condition, scores in r.conditions.items():
        yield from _scalars(r.lang, None, condition, asdict(scores))


def _mc(r: mc.MCResult) -> Iterator[Row]:
    for condition, scores in r.conditions.items():
        yield from _scalars(r.lang, None, condition, asdict(scores))
    yield r.lang, None, None, "chance", None, r.chance


def _output_lang(r: output_lang.OutputLangResult) -> Iterator[Row]:
    for condition, values in r.conditions.items():
        yield from ((r.lang, None, condition, f"share_{label}", None, v) for label, v in values.items())


def _logit_lens(r: logit_lens.LogitLensResult) -> Iterator[Row]:
    for condition, values in r.conditions.items():
        for label, curve in values.items():
            yield from ((r.lang, None, condition, f"share_{label}", layer, v) for layer, v in enumerate(curve))


def _sweep(r: sweep.SweepResult) -> Iterator[Row]:
    cells = {sweep.NORMAL: r.normal} | {sweep.condition_name(f, k): v for (f, k), v in r.cells.items()}
    for condition, values in cells.items():
        yield from ((r.lang, None, condition, f"share_{label}", None, v) for label, v in values.items())


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
    'a vs b'), `condition`, `metric`, `layer` (missing for scalars) and `value` (float).

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
        for lang, subject, condition, metric, layer, value in rows(load(folder)):
            records.append((step, command, lang, subject, condition, metric, layer, float(value)))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table["layer"] = table["layer"].astype("Int64")
    table["value"] = table["value"].astype(float)
    return table
