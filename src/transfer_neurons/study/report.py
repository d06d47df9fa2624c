"""report.html: one self-contained page (figures embedded as data URIs) over a study's run directory.

It opens with the Findings (study.findings), then shows every table with 95% intervals, read from
the steps' typed Results; figures come from the steps' folders, plus one grouped bar chart per
downstream task drawn here (report_figures/)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_neurons.analyses import (
    ablate,
    compare_methods,
    finetune,
    latent,
    mc,
    neuron_pages,
    output_lang,
    overlap,
    qa,
    specificity,
)
from transfer_neurons.analyses.base import DownstreamResult
from transfer_neurons.analyses.steer import SPLIT_NOTE, SteerResult
from transfer_neurons.artifacts import names, plots, templates
from transfer_neurons.artifacts.io import atomic_path
from transfer_neurons.metrics.uncertainty import ALPHA, Estimate, Finding
from transfer_neurons.study.config import StudyConfig
from transfer_neurons.study.findings import step_results, write_findings

FIGURES = "report_figures"
CONDITIONS = ("normal", "deactivated", "random")


def p_text(p: float | None) -> str:
    if p is None:
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def random_text(e: Estimate, digits: int = 3) -> str:
    """The random baseline's mean with its interval, and the spread between its seeds."""
    spread = f" (sd {e.spread:.{digits}f})" if e.spread is not None else ""
    return e.text(digits) + spread


@dataclass
class Compared:
    """One metric of a controlled experiment, ready to print."""

    normal: str
    deactivated: str
    random: str
    effect: str
    p: str

    @classmethod
    def of(cls, estimates: dict[str, Estimate], digits: int = 3) -> Compared:
        deactivated = estimates["deactivated"]
        effect = deactivated.effect_vs_random
        return cls(
            estimates["normal"].text(digits),
            deactivated.text(digits),
            random_text(estimates["random"], digits),
            "" if effect is None else effect.text(digits),
            p_text(deactivated.p_vs_random),
        )


def _complete(folder: Path) -> bool:
    return (folder / names.MANIFEST).is_file()


def _effects(middle_layers: str) -> dict[str, str]:
    """What each claim's effect measures, in words."""
    return {
        "middle_peak": f"mean mutual kNN over layers {middle_layers or 'in the middle third'} minus the other layers",
        "type1_alignment": "mean mutual kNN over layers, deactivated minus random",
        "type2_specific": "mean eta\u00b2 (target vs rest) of the Type-2 top-n minus the Type-1 top-n",
        "type2_output": "share of continuations in the prompt language, deactivated minus random",
        "type1_qa": "token F1, deactivated minus random",
        "type2_steer": "share of test continuations in the target language, steered minus random sets",
        "other_steer": "share of test continuations in the target language, steered minus random sets",
    }


def _claims_view(findings: list[Finding], middle_layers: str) -> list[dict[str, Any]]:
    """The findings grouped by claim (in the order measured), each row ready to print."""
    effects = _effects(middle_layers)
    claims: dict[str, dict[str, Any]] = {}
    for f in findings:
        claim = claims.setdefault(f.claim, {"text": f.text, "effect": effects[f.claim], "units": f.units, "rows": []})
        text = {
            "effect_text": Estimate(f.effect, f.ci).text(3),
            "p_text": p_text(f.p),
            "adjusted_text": p_text(f.p_adjusted),
            "stopped_by_draws": f.stopped_by_draws,
        }
        claim["rows"].append({**f.to_json(), **text})
    return list(claims.values())


def _latent_view(out: Path) -> tuple[list[dict[str, Any]] | None, str]:
    """Per language: the mutual-kNN peak and the middle-minus-other-layers contrast; and the
    middle layers ('6-11') that contrast averages over."""
    if not _complete(out / "latent"):
        return None, ""
    result = latent.LatentResult.load(out / "latent")
    rows, layers = [], ""
    for lang, curves in result.pairs.items():
        peak, middle = result.peaks[lang], result.middle_peak[lang]
        rows.append(
            {
                "lang": lang,
                "n": result.n_pairs(lang),
                "peak": str(peak),
                "peak_value": f"{curves.mknn[peak]:.3f}",
                "middle": "" if middle is None else Estimate(middle.value, middle.ci).text(3),
                "p": "" if middle is None else p_text(middle.p),
            }
        )
        if middle is not None:
            layers = f"{middle.middle[0]}-{middle.middle[-1]}"
    return rows, layers


def _ablation_view(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    rows = []
    for lang, result in step_results(out, "ablate", ablate.AblationResult, config.languages):
        summary = result.summary
        metrics = {m: Compared.of({c: summary[c][m] for c in CONDITIONS}) for m in ("mean_mknn", "mean_gap")}
        rows.append({"lang": lang, "n": result.n_pairs, "metrics": metrics})
    return rows


def _methods_view(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    """Per compared language: one row per method (compare_methods.report_rows) and its figure."""
    languages = config.methods_languages() if config.methods.enabled else []
    return [
        {
            "lang": lang,
            "n": r.n_pairs,
            "rows": compare_methods.report_rows(r),
            "figure": f"methods/{lang}/{names.METHODS_FIGURE}",
        }
        for lang, r in step_results(out, "methods", compare_methods.MethodsResult, languages)
    ]


def _steer_view(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    """Per steered language: the unsteered model and one row per (set, method) at the alpha chosen on
    the dev prompts, measured on the test prompts (steered, random, their difference and p), and the
    figure of the dev grid."""
    views = []
    languages = config.steer_languages() if config.steer.enabled else []
    for lang, result in step_results(out, "steer", SteerResult, languages):
        normal = result.normal["test"]
        rows = []
        for cell in result.chosen:
            s, r = cell.steered, cell.random
            effect = s["target"].effect_vs_random
            rows.append(
                {
                    "label": cell.label,
                    "alpha": f"{cell.key['alpha']:g}",
                    "target": s["target"].text(3),
                    "random": random_text(r["target"]),
                    "effect": "" if effect is None else effect.text(3),
                    "p": p_text(s["target"].p_vs_random),
                    "cells": [s[m].text(3) for m in ("source", "blank", "loglik", "repeat")],
                }
            )
        views.append(
            {
                "lang": lang,
                "n": result.settings["n_prompts"],
                "normal": [normal[m].text(3) for m in ("target", "source", "blank", "loglik", "repeat")],
                "rows": rows,
                "figure": f"steer/{lang}/{names.STEER_FIGURE}",
            }
        )
    return views


FINETUNE_METRICS = {
    "l2_perplexity": "L2 perplexity",
    "en_perplexity": "English perplexity",
    "mean_mknn": "mean mutual kNN",
    "mean_gap": "mean centred gap",
    "middle_gap": "middle-layer centred gap",
    "qa_f1": "QA F1",
}


def _finetune_view(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    """Per fine-tuned language: the measures before (the same base model for every condition), one row
    per condition (after, and the paired change with its interval and p) and the loss curves together."""
    views = []
    for lang in config.finetune_languages() if config.finetune.enabled else []:
        folders = {name: out / "finetune" / lang / name for name, _, _ in config.finetune.conditions()}
        results = {name: finetune.FinetuneResult.load(f) for name, f in folders.items() if _complete(f)}
        if not results:
            continue
        figure = out / FIGURES / f"finetune_{lang}.png"
        figure.parent.mkdir(exist_ok=True)
        finetune.plot_loss({name: r.losses for name, r in results.items()}, f"Fine-tuning loss ({lang})", figure)
        first = next(iter(results.values()))
        metrics = [m for m in FINETUNE_METRICS if m in first.change]
        rows = []
        for name, r in results.items():
            p = r.parameters
            rank = "" if p["lora_rank"] is None else f", rank {p['lora_rank']}"
            rows.append(
                {
                    "condition": name,
                    "trainable": f"{p['trainable']:,} (top-{r.config.top_k}: {p['target']:,}{rank})",
                    "loss": f"{r.losses[0]:.3f} \u2192 {sum(r.losses[-10:]) / len(r.losses[-10:]):.3f}",
                    "cells": [(r.summary["after"][m].text(3), r.change[m].text(3)) for m in metrics],
                }
            )
        views.append(
            {
                "lang": lang,
                "counts": first.counts,
                "steps": len(first.losses),
                "metrics": [FINETUNE_METRICS[m] for m in metrics],
                "before": [first.summary["before"][m].text(3) for m in metrics],
                "rows": rows,
                "figure": data_uri(figure),
            }
        )
    return views


def eta2_cells(summary: dict[str, Any]) -> list[str]:
    """A set's entry of the specificity headline as printed: the share with eta^2 > 0.1 and the mean
    eta^2, each of the top-n, of the random baseline and p."""
    cells = []
    for key in ("share_eta2_gt_0.1", "mean_eta2"):
        top, random = Estimate.from_json(summary["top"][key]), Estimate.from_json(summary["random"][key])
        cells += [top.text(3), random_text(random), p_text(top.p_vs_random)]
    return cells


def _specificity_view(out: Path) -> list[dict[str, Any]] | None:
    if not _complete(out / "specificity"):
        return None
    headline = specificity.SpecificityResult.load(out / "specificity").headline()
    return [{"name": name, "n": s["top"]["n"], "cells": eta2_cells(s)} for name, s in headline.items()]


def _task_rows(
    out: Path, task: str, result: type[DownstreamResult], config: StudyConfig
) -> list[tuple[str, int, dict[str, Estimate]]]:
    """(language, items, condition -> Estimate of the task's headline metric) per finished step."""
    return [(lang, r.n_units, r.metric()) for lang, r in step_results(out, task, result, config.languages)]


TASKS: dict[str, tuple[type[DownstreamResult], str]] = {
    "qa": (qa.QAResult, "Generative QA: token F1"),
    "mc": (mc.MCResult, "Multiple choice: accuracy"),
    "output_lang": (output_lang.OutputLangResult, "Output language: share of continuations in the prompt language"),
}


def _downstream_view(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    """Per task: a language x condition table and a grouped bar chart with the intervals."""
    tasks = []
    for task, (result, title) in TASKS.items():
        rows = _task_rows(out, task, result, config)
        if not rows:
            continue
        figure = out / FIGURES / f"{task}.png"
        figure.parent.mkdir(exist_ok=True)
        plots.grouped_bars(
            {lang: {c: e[c].value for c in CONDITIONS} for lang, _, e in rows},
            title,
            "score",
            figure,
            (0, 1.12),
            errors={lang: {c: ci for c in CONDITIONS if (ci := e[c].ci) is not None} for lang, _, e in rows},
            n_label=_n_label({lang: n for lang, n, _ in rows}, result.UNITS),
        )
        table = [{"lang": lang, "n": n, **vars(Compared.of(e))} for lang, n, e in rows]
        tasks.append({"title": title, "rows": table, "figure": data_uri(figure)})
    return tasks


def _n_label(counts: dict[str, int], units: str) -> str:
    """'n = 16 questions per language', or the count of each language when they differ."""
    if len(set(counts.values())) == 1:
        return f"n = {next(iter(counts.values()))} {units} per language"
    return ", ".join(f"{lang}: n = {n}" for lang, n in counts.items()) + f" {units}"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""


def write_report(out: Path, config: StudyConfig, records: dict[str, dict], versions: dict[str, str]) -> Path:
    """Write findings.json and render report.html from the step records and artifacts in `out`."""
    findings = write_findings(out, config)
    latent_rows, middle_layers = _latent_view(out)
    ablations = _ablation_view(out, config)
    spec = _specificity_view(out)
    overlap_result = overlap.OverlapResult.load(out / "overlap") if _complete(out / "overlap") else None
    downstream = _downstream_view(out, config)
    pages = (
        {(card["layer"], card["neuron"]) for card in neuron_pages.NeuronPages.load(out / "neurons").cards}
        if _complete(out / "neurons")
        else set()
    )
    sections = [("findings", "Findings"), ("summary", "Model and data")]
    sections += [("latent", "Latent space")] if latent_rows else []
    sections += [("detect", "Transfer neurons")]
    sections += [("ablate", "Ablations")] if ablations else []
    methods = _methods_view(out, config)
    sections += [("methods", "Methods")] if methods else []
    sections += [("characterise", "Specificity and overlap")] if spec or overlap_result else []
    sections += [("downstream", "Downstream")] if downstream else []
    tuned = _finetune_view(out, config)
    sections += [("finetune", "Fine-tuning")] if tuned else []
    steered = _steer_view(out, config)
    sections += [("steer", "Steering")] if steered else []
    sections += [("timings", "Timings")]
    html = templates.render(
        "report.html",
        config=config,
        records=records,
        versions=versions,
        claims=_claims_view(findings, middle_layers),
        tests=sum(f.p is not None for f in findings),
        alpha=ALPHA,
        latent=latent_rows,
        ablations=ablations,
        methods=methods,
        specificity=spec,
        overlap=overlap_result,
        downstream=downstream,
        finetune=tuned,
        steer=steered,
        split_note=SPLIT_NOTE,
        sections=sections,
        pages=pages,
        card=lambda layer, neuron: f"neurons/{names.neuron_card(layer, neuron)}",
        image=lambda relative: data_uri(out / relative),
        summary=lambda name: records.get(name, {}).get("summary") or {},
        total_seconds=sum(r.get("seconds", 0.0) for r in records.values()),
    )
    path = out / names.REPORT
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return path
