"""Language specificity of neuron sets (DESIGN.md 3.5): streaming activation statistics, eta^2, ANOVA.

One pass over each language's sentences keeps per-language sufficient statistics of every
neuron's last-token activation; eta^2 and the ANOVA p-value under each labelling (the set's
target language vs the rest, language families, all languages) come from merging them. The top-n
of each neuron set is compared with a seeded random baseline drawn over the same layers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_json, read_tensors, write_json, write_tensors
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Baseline
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.interventions import Intervention, random_baseline
from transfer_neurons.metrics import specificity as spec
from transfer_neurons.model.loading import LoadedModel

ALPHA = 0.05  # significance level of the shares
THRESHOLDS = (0.1, 0.25)  # eta^2 thresholds of the shares
STATS = ("count", "sum", "sumsq", "shift")  # the GroupStats tensors kept beside eta^2 and p


class SpecificityConfig(Config):
    """Settings of one specificity analysis."""

    top_n: int = Field(1000, ge=1, description="Characterise the top-n neurons of each set.")
    baseline: Baseline = Field(Baseline.per_layer, description="Random baseline placement.")
    seed: int = Field(0, description="Seed of the random baseline.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    families: dict[str, str] | None = Field(None, description="Language families overriding the built-in table.")


@dataclass(frozen=True)
class EtaSummary:
    """`metrics.specificity.summarize` of one neuron list: count, mean and median eta^2, and the
    shares with eta^2 above 0.1 / 0.25 and p < ALPHA."""

    n: int
    mean_eta2: float
    median_eta2: float
    share_eta2_gt_0_1: float
    share_eta2_gt_0_25: float

    @property
    def shares(self) -> dict[str, float]:
        """Threshold (as written in the JSON keys) -> share."""
        return {"0.1": self.share_eta2_gt_0_1, "0.25": self.share_eta2_gt_0_25}

    def to_json(self) -> dict[str, float]:
        return {
            "n": self.n,
            "mean_eta2": self.mean_eta2,
            "median_eta2": self.median_eta2,
            **{f"share_eta2_gt_{t}": share for t, share in self.shares.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EtaSummary:
        return cls(
            int(data["n"]),
            float(data["mean_eta2"]),
            float(data["median_eta2"]),
            float(data["share_eta2_gt_0.1"]),
            float(data["share_eta2_gt_0.25"]),
        )


@dataclass(frozen=True)
class Comparison:
    """A set's top-n and its random baseline under one labelling."""

    top: EtaSummary
    random: EtaSummary


@dataclass(frozen=True)
class SetSpecificity:
    """One neuron set's summaries: labelling ("target", "family" when there are two or more
    families, "language") -> top-n vs random baseline."""

    lang: str
    type: str | None
    source: str | None
    top_n: int
    labellings: dict[str, Comparison]

    def to_json(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "type": self.type,
            "source": self.source,
            "top_n": self.top_n,
            **{name: {"top": c.top.to_json(), "random": c.random.to_json()} for name, c in self.labellings.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SetSpecificity:
        labellings = {
            name: Comparison(EtaSummary.from_json(value["top"]), EtaSummary.from_json(value["random"]))
            for name, value in data.items()
            if name not in ("lang", "type", "source", "top_n")
        }
        return cls(data["lang"], data["type"], data["source"], int(data["top_n"]), labellings)


@dataclass(eq=False)
class SpecificityResult(Result):
    """eta^2 / ANOVA p per neuron [L, m] under each labelling, per-set summaries, and the
    per-language sufficient statistics they come from (languages in `langs` order)."""

    command: ClassVar[str] = "specificity"

    model: str
    langs: list[str]
    families: dict[str, str]  # language -> family
    n_sentences: dict[str, int]
    sets: dict[str, SetSpecificity]
    eta2: dict[str, torch.Tensor]  # labelling key ("target_ja", "family", "language") -> [L, m] float32
    p: dict[str, torch.Tensor]  # same keys -> [L, m] float64
    stats: spec.GroupStats
    config: SpecificityConfig
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The content of specificity.json."""
        return {
            "schema_version": names.SCHEMA_VERSION,
            "model": self.model,
            "langs": self.langs,
            "families": self.families,
            "n_sentences": self.n_sentences,
            "alpha": ALPHA,
            "baseline": {"mode": self.config.baseline.value, "seed": self.config.seed},
            "sets": {name: s.to_json() for name, s in self.sets.items()},
        }

    def write_files(self, out: Path) -> list[str]:
        tensors = {}
        for key in self.eta2:
            tensors[f"eta2_{key}"], tensors[f"p_{key}"] = self.eta2[key], self.p[key]
        tensors |= {name: getattr(self.stats, name) for name in STATS}
        metadata = {"langs": ",".join(self.langs), "families": ",".join(self.families[lang] for lang in self.langs)}
        write_tensors(out / names.SPECIFICITY_TENSORS, tensors, metadata)
        write_json(out / names.SPECIFICITY, self.to_json())
        bars = {}
        for name, s in self.sets.items():
            for labelling in ("target", "family"):
                if labelling in s.labellings:
                    c = s.labellings[labelling]
                    bars[f"{name}\n{labelling}"] = {
                        f"{which} eta2>{t}": share
                        for which, summary in (("top", c.top), ("random", c.random))
                        for t, share in summary.shares.items()
                    }
        title = f"Language specificity of the top-{self.config.top_n} neurons (share with p < {ALPHA:g})"
        plots.grouped_bars(bars, title, "share", out / names.SPECIFICITY_FIGURE, (0, 1))
        return [names.SPECIFICITY, names.SPECIFICITY_TENSORS, names.SPECIFICITY_FIGURE]

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": self.config.model_dump(mode="json"),
            "seed": self.config.seed,
            "timings_s": self.timings,
        }

    @classmethod
    def load(cls, out: str | Path) -> SpecificityResult:
        """A specificity folder written by `save` (from the command line, a study or Python)."""
        out = Path(out)
        manifest = read_manifest(out, cls.command)
        data = read_json(out / names.SPECIFICITY)
        tensors = read_tensors(out / names.SPECIFICITY_TENSORS)
        stats = spec.GroupStats(len(tensors["count"]), tuple(tensors["sum"].shape[1:]))
        for name in STATS:
            setattr(stats, name, tensors[name])
        eta2, p = _eta2_and_p(tensors)
        return cls(
            model=data["model"],
            langs=data["langs"],
            families=data["families"],
            n_sentences=data["n_sentences"],
            sets={name: SetSpecificity.from_json(value) for name, value in data["sets"].items()},
            eta2=eta2,
            p=p,
            stats=stats,
            config=SpecificityConfig.model_validate(manifest["settings"]),
            timings=manifest.get("timings_s", {}),
        )

    def summary_lines(self) -> list[str]:
        """One line per set and labelling (target, family, language: every one computed)."""
        lines = []
        for name, s in self.sets.items():
            for labelling, c in s.labellings.items():
                top, rnd = c.top, c.random
                lines.append(
                    f"{name} ({labelling}): eta2>0.1 {top.share_eta2_gt_0_1:.1%} (random "
                    f"{rnd.share_eta2_gt_0_1:.1%}), eta2>0.25 {top.share_eta2_gt_0_25:.1%} (random "
                    f"{rnd.share_eta2_gt_0_25:.1%}), mean eta2 {top.mean_eta2:.3f} "
                    f"(random {rnd.mean_eta2:.3f})"
                )
        return lines


def _eta2_and_p(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tensors named eta2_<labelling> and p_<labelling>, each by labelling key."""
    eta2 = {k.removeprefix("eta2_"): v for k, v in tensors.items() if k.startswith("eta2_")}
    return eta2, {k.removeprefix("p_"): v for k, v in tensors.items() if k.startswith("p_")}


def name_sets(sets: Sequence[NeuronSet]) -> dict[str, NeuronSet]:
    """Each set under its name (`ja-type1`), or the folder of its file when the name is taken."""
    named: dict[str, NeuronSet] = {}
    for s in sets:
        folder = str(Path(s.source).parent) if s.source else f"{s.name}-{len(named)}"
        named[s.name if s.name not in named else folder] = s
    return named


def check_inputs(langs: Sequence[str], sets: Mapping[str, NeuronSet], config: SpecificityConfig) -> list[str]:
    """The family of each language; InputError for fewer than two languages, a language without a
    family, a set whose language has no sentences, or a set with fewer than top_n neurons."""
    if len(langs) < 2:
        raise InputError("specificity needs sentences of at least two languages (repeat --data)")
    families = spec.families_for(langs, config.families)
    for s in sets.values():
        if s.lang not in langs:
            raise InputError(f"'{s.source}' is for '{s.lang}', which no --data file covers ({', '.join(langs)})")
        if config.top_n > len(s.top):
            raise InputError(f"--top-n {config.top_n} exceeds the {len(s.top)} neurons listed in {s.source}")
    return families


def run(
    lm: LoadedModel,
    sentences: Mapping[str, Sequence[str]],
    sets: Mapping[str, NeuronSet],
    config: SpecificityConfig,
    progress: bool = False,
) -> SpecificityResult:
    """eta^2 / ANOVA of each set's top-n and of its random baseline (the command line and the study
    call this). `sentences`: language -> sentences; `sets`: name -> neuron set (see `name_sets`)."""
    langs = list(sentences)
    families = check_inputs(langs, sets, config)
    neuron_sets = {}
    for name, s in sets.items():
        s.check_model(lm.num_layers, lm.mlp_width)
        top = Intervention.of(s.neurons(config.top_n))
        random = random_baseline(top, lm.mlp_width, config.baseline, list(s.layers) or None, config.seed)
        neuron_sets[name] = {
            "lang": s.lang,
            "type": s.type,
            "source": s.source,
            "top_n": config.top_n,
            "top": top.pairs(),
            "random": random.pairs(),
        }
    start = time.perf_counter()
    stats = activation_stats(lm, sentences, config.batch_size, progress)
    summary, tensors = specificity_report(stats, langs, families, neuron_sets)
    seconds = time.perf_counter() - start
    eta2, p = _eta2_and_p(tensors)
    return SpecificityResult(
        model=lm.name,
        langs=langs,
        families=dict(zip(langs, families, strict=True)),
        n_sentences={lang: len(texts) for lang, texts in sentences.items()},
        sets={name: SetSpecificity.from_json(value) for name, value in summary.items()},
        eta2=eta2,
        p=p,
        stats=stats,
        config=config,
        timings={"total": seconds},
    )


def activation_stats(
    lm: LoadedModel, sentences: Mapping[str, Sequence[str]], batch_size: int = 16, progress: bool = True
) -> spec.GroupStats:
    """Streaming per-language statistics of every neuron's last-token activation, shape [L, m]."""
    stats = spec.GroupStats(len(sentences), (lm.num_layers, lm.mlp_width))
    layers = range(lm.num_layers)
    for group, (lang, texts) in enumerate(sentences.items()):
        for batch in capture(
            lm, texts, ("act",), batch_size=batch_size, desc=f"activations ({lang})", progress=progress
        ):
            stats.update(torch.stack([batch["act"][layer] for layer in layers], dim=1), group)
    return stats


def specificity_report(
    stats: spec.GroupStats,
    langs: Sequence[str],
    families: Sequence[str],
    neuron_sets: dict[str, dict],
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Summaries per neuron set and per labelling, and the per-neuron eta^2 / p tensors.

    `neuron_sets[name]` holds ``lang`` (the target language), ``top`` and ``random`` (lists of
    (layer, neuron)). Labellings: the set's target language vs the rest, language families (when
    there are at least two), and all languages.
    """
    targets = list(dict.fromkeys(info["lang"] for info in neuron_sets.values()))
    results, tensors = {}, {}
    for name, mapping in spec.labelings(langs, families, targets).items():
        merged = stats.regroup(mapping)
        eta2, p = merged.eta_squared(), merged.anova_p()
        key = name.replace(":", "_")
        tensors[f"eta2_{key}"], tensors[f"p_{key}"] = eta2.float(), p
        results[name] = (eta2, p)
    summary = {}
    for set_name, info in neuron_sets.items():
        per = {}
        for name, (eta2, p) in results.items():
            if name.startswith("target:") and name != f"target:{info['lang']}":
                continue
            label = "target" if name.startswith("target:") else name
            per[label] = {which: spec.summarize(eta2, p, info[which], THRESHOLDS, ALPHA) for which in ("top", "random")}
        summary[set_name] = {k: v for k, v in info.items() if k not in ("top", "random")} | per
    return summary, tensors
