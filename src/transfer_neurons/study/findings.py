"""Findings (docs/method.md section 8): each of the paper's claims that a study measured, one row per
language, with its effect, its interval and p from one test, the p-value adjusted by
Benjamini-Hochberg over every row, and a verdict from the adjusted p (`metrics.uncertainty.verdict`).
Read from the finished steps' folders, written to findings.json and shown first in the report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from transfer_neurons.analyses import ablate, latent, output_lang, qa, specificity
from transfer_neurons.analyses.base import DownstreamResult
from transfer_neurons.analyses.steer import SteerResult
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import write_json
from transfer_neurons.artifacts.result import Result
from transfer_neurons.metrics.uncertainty import ALPHA, Estimate, Finding, adjust, beyond_random
from transfer_neurons.study.config import StudyConfig

R = TypeVar("R", bound=Result)
Reader = Callable[[Path, StudyConfig], Iterator[Finding]]  # a claim's rows from a study's folder
CLAIMS = {
    "middle_peak": "Mutual-kNN alignment peaks in the middle layers",
    "type1_alignment": "Type-1 deactivation lowers alignment more than random",
    "type2_specific": "Type-2 neurons are more language-specific than Type-1",
    "type2_output": "Type-2 deactivation moves the output away from L2",
    "type1_qa": "Type-1 deactivation lowers QA more than random",
    "type2_steer": "The target language's Type-2 neurons force output into it more than random neurons",
    "other_steer": "The best other set forces output into the target language more than random neurons",
}


def step_results(out: Path, step: str, cls: type[R], languages: list[str]) -> Iterator[tuple[str, R]]:
    """(language, its Result) of every complete folder `out/step/<language>`, in `languages` order."""
    for lang in languages:
        if (out / step / lang / names.MANIFEST).is_file():
            yield lang, cls.load(out / step / lang)


def _compared(
    claim: str, lang: str, estimate: Estimate, random: Estimate, n: int, units: str, source: str, sign: int = -1
) -> Finding:
    """A finding from a compared condition's Estimate: its effect vs random, that interval and p, and
    whether it lies beyond every random draw (`random`'s per-draw values; `beyond_random`)."""
    effect = estimate.effect_vs_random
    assert effect is not None, f"{source}: no comparison with the random baseline"
    beyond = beyond_random(estimate, random)
    p = estimate.p_vs_random
    return Finding(claim, CLAIMS[claim], lang, effect.value, effect.ci, p, n, units, sign, source, beyond=beyond)


def _middle_peak(out: Path, config: StudyConfig) -> Iterator[Finding]:
    result = latent.LatentResult.load(out / "latent")
    for lang, peak in result.middle_peak.items():
        if peak is None:  # fewer than three layers: no middle
            continue
        yield Finding(
            "middle_peak", CLAIMS["middle_peak"], lang, peak.value, peak.ci, peak.p, peak.n, "test pairs", +1, "latent"
        )


def _type1_alignment(out: Path, config: StudyConfig) -> Iterator[Finding]:
    for lang, result in step_results(out, "ablate", ablate.AblationResult, config.languages):
        summary = result.summary
        estimate, random = summary["deactivated"]["mean_mknn"], summary["random"]["mean_mknn"]
        yield _compared("type1_alignment", lang, estimate, random, result.n_pairs, "test pairs", f"ablate/{lang}")


def _type2_specific(out: Path, config: StudyConfig) -> Iterator[Finding]:
    result = specificity.SpecificityResult.load(out / "specificity")
    for lang in config.languages:
        sets = {neuron_type: f"{lang}-{neuron_type}" for neuron_type in ("type1", "type2")}
        if all(name in result.sets for name in sets.values()):
            difference = result.contrast(sets["type2"], sets["type1"])
            yield Finding(
                "type2_specific",
                CLAIMS["type2_specific"],
                lang,
                difference.value,
                difference.ci,
                difference.p_vs_random,
                result.n_sentences[lang],
                "sentences (mean eta^2 of the top-n, target labelling)",
                +1,
                "specificity",
            )


def _deactivation(claim: str, step: str, cls: type[DownstreamResult]) -> Reader:
    """The reader of a claim on a downstream task: its headline metric under the deactivated condition."""

    def read(out: Path, config: StudyConfig) -> Iterator[Finding]:
        for lang, result in step_results(out, step, cls, config.languages):
            metric = result.metric()
            yield _compared(
                claim, lang, metric["deactivated"], metric["random"], result.n_units, cls.UNITS, f"{step}/{lang}"
            )

    return read


def _steer(out: Path, config: StudyConfig) -> Iterator[Finding]:
    """Per language, the Type-2 set's best method and the best other (set, method), each chosen by its
    target share on the dev prompts at the alpha chosen there; effect and p on the test prompts."""
    for lang, result in step_results(out, "steer", SteerResult, config.languages):
        fields = ("set", "method", "deactivate_source", "alpha")
        dev = {tuple(c.key[k] for k in fields): c.steered["target"].value for c in result.grid}
        n = result.settings["n_prompts"]["test"]
        for claim, is_type2 in (("type2_steer", True), ("other_steer", False)):
            cells = [c for c in result.chosen if (c.key["set"] == f"{lang}-type2") == is_type2]
            if not cells:
                continue
            best = max(cells, key=lambda c: dev[tuple(c.key[k] for k in fields)])
            key = best.key
            units = f"test prompts ({key['set']}, {key['method']}, alpha {key['alpha']:g})"
            target = best.steered["target"], best.random["target"]
            yield _compared(claim, lang, *target, n, units, f"steer/{lang}", sign=+1)


READERS: dict[str, tuple[str, Reader]] = {
    "middle_peak": ("latent", _middle_peak),
    "type1_alignment": ("ablate", _type1_alignment),
    "type2_specific": ("specificity", _type2_specific),
    "type2_output": ("output_lang", _deactivation("type2_output", "output_lang", output_lang.OutputLangResult)),
    "type1_qa": ("qa", _deactivation("type1_qa", "qa", qa.QAResult)),
    "steer": ("steer", _steer),
}


def findings(out: Path, config: StudyConfig) -> list[Finding]:
    """Every claim the study measured (its step folder is complete), one row per language, the
    p-values adjusted by Benjamini-Hochberg over all rows."""
    rows: list[Finding] = []
    for folder, reader in READERS.values():
        if (out / folder).is_dir() and any((out / folder).rglob(names.MANIFEST)):
            rows += list(reader(out, config))
    return adjust(rows)


def write_findings(out: Path, config: StudyConfig) -> list[Finding]:
    """findings.json: the rows, how many tests they are, the level of each verdict."""
    rows = findings(out, config)
    write_json(
        out / names.FINDINGS,
        {
            "schema_version": names.SCHEMA_VERSION,
            "model": config.model,
            "alpha": ALPHA,
            "tests": sum(row.p is not None for row in rows),
            "adjustment": "Benjamini-Hochberg over every row (false discovery rate q = alpha)",
            "bootstrap": config.bootstrap,
            "verdicts": "holds: the effect has the claimed sign and its adjusted p < alpha; does not hold: the "
            "other sign with adjusted p < alpha; inconclusive: otherwise. With at least 19 random draws both "
            "also need the compared value beyond every draw (beyond_draws). Each row's 95% interval and p come "
            "from one test",
            "rows": [row.to_json() for row in rows],
        },
    )
    return rows
