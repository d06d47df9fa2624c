"""Language specificity of neuron sets (docs/method.md sections 6, 8): streaming activation statistics, eta^2, ANOVA.

One pass over each language's sentences keeps per-language sufficient statistics of every
neuron's last-token activation; eta^2 and the ANOVA p-value under each labelling (the set's
target language vs the rest, language families, all languages) come from merging them. Each set's
top-n is compared with a random baseline of the same layers drawn with `baseline_seeds` seeds (no
extra model pass: a draw only picks other neurons); every summary is an Estimate whose interval
covers the sampling of sentences (a delete-one-block jackknife over `blocks` blocks of each
language's sentences), the random draws a random effect (`metrics.specificity.compare_to_random`).

specificity.safetensors keeps what every summary comes from: `eta2_<labelling>` [L, m] (float32,
the values summarised) and `p_<labelling>`, the sufficient statistics, per set
`top_neurons/<set>` [n, 2] (layer, neuron; rank order) and `random_neurons/<set>` [S, n, 2] (draw s
seeded seed + s), and the summaries with each block left out, `replicates/<set>/<labelling>/<top or
random>/<statistic>` ([G], [G, S]). `SpecificityResult.values` looks per-neuron values up,
`summarise` recomputes the summaries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config, baseline_field, seed_field
from transfer_neurons.analyses.specificity_summary import (
    Comparison,
    EtaSummary,
    SetSpecificity,
    estimate_text,
    p_text,
)
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_tensors, write_json, write_tensors
from transfer_neurons.artifacts.neurons import NeuronSet
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Baseline
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.interventions import Intervention, random_baseline
from transfer_neurons.metrics import specificity as spec
from transfer_neurons.metrics.uncertainty import Estimate, t_test
from transfer_neurons.model.loading import LoadedModel

ALPHA = 0.05  # significance level of the shares
THRESHOLDS = (0.1, 0.25)  # eta^2 thresholds of the shares
STATS = ("count", "sum", "sumsq", "shift")  # the GroupStats tensors kept beside eta^2 and p
LABELLINGS = ("target", "family", "language")  # "family" only with two or more families
TOP, RANDOM = "top_neurons/", "random_neurons/"  # tensor name prefixes of each set's neuron indices
REPLICATES = "replicates/"  # prefix of the summaries with each block of sentences left out
Replicates = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # top [G], draws [G, S] per statistic


class SpecificityConfig(Config):
    """Settings of one specificity analysis."""

    top_n: int = Field(1000, ge=1, description="Characterise the top-n neurons of each set.")
    baseline: Baseline = baseline_field()
    seed: int = seed_field("Seed of the random baseline and of the bootstrap.")
    baseline_seeds: int = Field(5, ge=1, description="Random baseline draws per set (seeds seed, seed + 1, ...).")
    bootstrap: int = Field(1000, ge=0, description="Intervals on (any value but 0) or off (0).")
    blocks: int = Field(
        10, ge=2, description="Jackknife blocks of each language's sentences (fewer when a language has fewer)."
    )
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    families: dict[str, str] | None = Field(
        None, description="Language families overriding the built-in table, e.g. ja=Japonic,xx=Other."
    )

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seed of each random baseline draw."""
        return tuple(self.seed + s for s in range(self.baseline_seeds))


@dataclass(eq=False)
class SpecificityResult(Result):
    """eta^2 / ANOVA p per neuron [L, m] under each labelling, per-set summaries, each set's top-n
    and random draws as (layer, neuron) indices, and the per-language sufficient statistics the
    tensors come from (languages in `langs` order)."""

    command: ClassVar[str] = "specificity"
    SUMMARY: ClassVar[str] = names.SPECIFICITY
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("eta2", "p", "top_neurons", "random_neurons", "stats", "replicates")

    model: str
    langs: list[str]
    families: dict[str, str]  # language -> family
    n_sentences: dict[str, int]
    sets: dict[str, SetSpecificity]
    eta2: dict[str, torch.Tensor]  # labelling key ("target_ja", "family", "language") -> [L, m] float32
    p: dict[str, torch.Tensor]  # same keys -> [L, m] float64
    top_neurons: dict[str, torch.Tensor]  # set -> [n, 2] int64 (layer, neuron), rank order
    random_neurons: dict[str, torch.Tensor]  # set -> [S, n, 2] int64, draw s seeded config.seed + s
    stats: spec.GroupStats
    config: SpecificityConfig
    replicates: dict[tuple[str, str], Replicates] = field(default_factory=dict)  # (set, labelling) -> jackknife
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def blocks(self) -> int | None:
        """Jackknife blocks of sentences per language (None without intervals)."""
        any_set = next(iter(self.replicates.values()), None)
        return None if any_set is None else len(next(iter(any_set[0].values())))

    @property
    def labellings(self) -> list[str]:
        """The labellings every set is summarised under."""
        return [name for name in LABELLINGS if name == "target" or name in self.eta2]

    def values(
        self, set_name: str, labelling: str = "target", which: Literal["top", "random"] = "top"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(eta^2, p) of a set's top-n ([n], rank order) or of its random draws ([S, n]) under a
        labelling ("target": the set's language vs the rest, "family", "language"), float64."""
        if set_name not in self.sets:
            raise InputError(f"no neuron set '{set_name}' in this result ({', '.join(self.sets)})")
        if labelling not in self.labellings:
            raise InputError(f"no labelling '{labelling}' in this result ({', '.join(self.labellings)})")
        key = f"target_{self.sets[set_name].lang}" if labelling == "target" else labelling
        neurons = (self.top_neurons if which == "top" else self.random_neurons)[set_name]
        layer, neuron = neurons.unbind(-1)
        return self.eta2[key][layer, neuron].double().numpy(), self.p[key][layer, neuron].double().numpy()

    def top_eta2(self, set_name: str, labelling: str = "target") -> np.ndarray:
        """Per-neuron eta^2 [n] of a set's top-n in rank order."""
        return self.values(set_name, labelling)[0]

    def contrast(self, first: str, second: str, statistic: str = "mean_eta2", labelling: str = "target") -> Estimate:
        """A summary of set `first`'s top-n minus the same summary of set `second` (the same sentences),
        with interval and p (`p_vs_random`) from one t test with the jackknife variance of the
        difference (G - 1 df); no interval without replicates."""
        values = [
            spec.statistics(*self.values(name, labelling), THRESHOLDS, ALPHA)[statistic] for name in (first, second)
        ]
        difference = float(values[0]) - float(values[1])
        if (first, labelling) not in self.replicates or (second, labelling) not in self.replicates:
            return Estimate(difference)
        a, b = (self.replicates[name, labelling][0][statistic] for name in (first, second))
        ci, p = t_test(difference, float(spec.jackknife_variance(a - b)), len(a) - 1)
        return Estimate(difference, ci, p)

    def summarise(self) -> dict[str, SetSpecificity]:
        """Every set's summaries, computed from the stored per-neuron values and jackknife replicates
        (`run` stores exactly these; a loaded result gives the same)."""
        keys = [(name, labelling) for name in self.sets for labelling in self.labellings]
        compared = spec.compare_to_random(
            {key: self.values(*key) for key in keys},
            {key: self.values(*key, which="random") for key in keys},
            {key: self.replicates[key] for key in keys} if self.replicates else None,
            self.config.seeds,
            THRESHOLDS,
            ALPHA,
        )
        return {
            name: replace(
                s,
                labellings={
                    labelling: Comparison(*(EtaSummary.of(s.top_n, e) for e in compared[name, labelling]))
                    for labelling in self.labellings
                },
            )
            for name, s in self.sets.items()
        }

    def to_json(self) -> dict[str, Any]:
        """The content of specificity.json."""
        config = self.config
        return {
            "schema_version": names.SCHEMA_VERSION,
            "model": self.model,
            "langs": self.langs,
            "families": self.families,
            "n_sentences": self.n_sentences,
            "alpha": ALPHA,
            "baseline": {"mode": config.baseline.value, "seed": config.seed, "seeds": list(config.seeds)},
            "bootstrap": config.bootstrap,
            "jackknife_blocks": self.blocks,
            "sets": {name: s.to_json() for name, s in self.sets.items()},
        }

    def write_files(self, out: Path) -> list[str]:
        tensors = {}
        for key in self.eta2:
            tensors[f"eta2_{key}"], tensors[f"p_{key}"] = self.eta2[key], self.p[key]
        tensors |= {name: getattr(self.stats, name) for name in STATS}
        tensors |= {TOP + name: t for name, t in self.top_neurons.items()}
        tensors |= {RANDOM + name: t for name, t in self.random_neurons.items()}
        for (name, labelling), (top, draws) in self.replicates.items():
            for which, values in (("top", top), ("random", draws)):
                tensors |= {
                    f"{REPLICATES}{name}/{labelling}/{which}/{k}": torch.from_numpy(v) for k, v in values.items()
                }
        metadata = {"langs": ",".join(self.langs), "families": ",".join(self.families[lang] for lang in self.langs)}
        write_tensors(out / names.SPECIFICITY_TENSORS, tensors, metadata)
        write_json(out / names.SPECIFICITY, self.to_json())
        self.plot(out / names.SPECIFICITY_FIGURE)
        return [names.SPECIFICITY, names.SPECIFICITY_TENSORS, names.SPECIFICITY_FIGURE]

    def plot(self, path: Path) -> None:
        """Shares of the top-n and of the random baseline per set (target and family labellings),
        with their 95 % intervals."""
        bars: dict[str, dict[str, float]] = {}
        errors: dict[str, dict[str, tuple[float, float]]] = {}
        for name, s in self.sets.items():
            for labelling in ("target", "family"):
                if labelling in s.labellings:
                    c, group = s.labellings[labelling], f"{name}\n{labelling}"
                    pairs = (("top", c.top), ("random", c.random))
                    shares = {f"{which} eta2>{t}": e for which, summary in pairs for t, e in summary.shares.items()}
                    bars[group] = {series: share.value for series, share in shares.items()}
                    errors[group] = {series: share.ci for series, share in shares.items() if share.ci is not None}
        n, draws = self.config.top_n, self.config.baseline_seeds
        title = f"Language specificity of the top-{n} neurons (share with p < {ALPHA:g})"
        n_label = f"n = {n} neurons per set; random: {draws} draw{'s' * (draws > 1)} of {n}"
        plots.grouped_bars(bars, title, "share", path, (0, 1), errors=errors, n_label=n_label)

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """The tensors: per-neuron values, the sets' neurons, the statistics and the replicates."""
        tensors = read_tensors(out / names.SPECIFICITY_TENSORS)
        stats = spec.GroupStats(len(tensors["count"]), tuple(tensors["sum"].shape[1:]))
        for name in STATS:
            setattr(stats, name, tensors[name])
        return {
            "eta2": _prefixed(tensors, "eta2_"),
            "p": _prefixed(tensors, "p_"),
            "top_neurons": _prefixed(tensors, TOP),
            "random_neurons": _prefixed(tensors, RANDOM),
            "stats": stats,
            "replicates": _replicates(_prefixed(tensors, REPLICATES)),
        }

    def headline(self) -> dict[str, Any]:
        """What the study records of the step and the model comparison reads: per set, the eta^2
        summaries of its top-n and of its random baseline under the target labelling."""
        target = {name: s.labellings["target"] for name, s in self.sets.items()}
        return {name: {"top": c.top.to_json(), "random": c.random.to_json()} for name, c in target.items()}

    def summary_lines(self) -> list[str]:
        """One line per set and labelling (target, family, language: every one computed): the
        shares and the mean eta^2 of the top-n with their intervals, vs the random baseline."""
        lines = []
        for name, s in self.sets.items():
            for labelling, c in s.labellings.items():
                (t, share), *more = c.top.shares.items()
                parts = [
                    f"eta^2 > {t} for {estimate_text(share, '.1%')} of {c.top.n} neurons vs random "
                    f"{estimate_text(c.random.shares[t], '.1%')} ({p_text(share.p_vs_random)})",
                    *(
                        f"> {t}: {estimate_text(e, '.1%')} vs {estimate_text(c.random.shares[t], '.1%')} "
                        f"({p_text(e.p_vs_random)})"
                        for t, e in more
                    ),
                    f"mean {estimate_text(c.top.mean_eta2, '.3f')} vs {estimate_text(c.random.mean_eta2, '.3f')} "
                    f"({p_text(c.top.mean_eta2.p_vs_random)})",
                ]
                lines.append(f"{name} ({labelling}): " + "; ".join(parts))
        return lines


def _replicates(tensors: Mapping[str, torch.Tensor]) -> dict[tuple[str, str], Replicates]:
    """The jackknife replicates stored as '<set>/<labelling>/<top or random>/<statistic>'."""
    out: dict[tuple[str, str], Replicates] = {}
    for name, values in tensors.items():
        set_name, labelling, which, statistic = name.rsplit("/", 3)
        top, draws = out.setdefault((set_name, labelling), ({}, {}))
        (top if which == "top" else draws)[statistic] = values.double().numpy()
    return out


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose name starts with `prefix`, by the rest of the name."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


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
    described = {
        name: SetSpecificity(str(s.lang), s.neuron_type, s.source, config.top_n, {}) for name, s in sets.items()
    }
    top_neurons, random_neurons = {}, {}
    for name, s in sets.items():
        lm.check_neurons(s)
        top, layers = s.neurons(config.top_n), list(s.layers) or None
        # draw k seeded seed + k: the first draw is the single-seed baseline
        draws = [random_baseline(Intervention.of(top), lm.mlp_width, config.baseline, layers, k) for k in config.seeds]
        top_neurons[name] = torch.tensor(top, dtype=torch.int64)
        random_neurons[name] = torch.tensor([d.pairs() for d in draws], dtype=torch.int64)
    start = time.perf_counter()
    blocks = spec.blocks_for([len(texts) for texts in sentences.values()], config.blocks)
    by_block = activation_stats(lm, sentences, config.batch_size, progress, blocks, config.seed)
    stats = by_block.regroup([lang for lang in range(len(langs)) for _ in range(blocks)])
    measured = time.perf_counter()
    targets = list(dict.fromkeys(d.lang for d in described.values()))
    eta2, p = spec.labelling_tensors(stats, langs, families, targets)
    replicates: dict[tuple[str, str], Replicates] = {}
    if config.bootstrap:
        for labelling, mapping in spec.labelings(langs, families, targets).items():
            kind = labelling.partition(":")[0]
            lists = {
                (name, which): index
                for name, s in described.items()
                if kind != "target" or labelling == f"target:{s.lang}"
                for which, index in (("top", top_neurons[name]), ("random", random_neurons[name]))
            }
            values = spec.block_replicates(by_block, mapping, blocks, lists, THRESHOLDS, ALPHA)
            for name in described:
                if (name, "top") in values:
                    replicates[name, kind] = (values[name, "top"], values[name, "random"])
    result = SpecificityResult(
        model=lm.name,
        langs=langs,
        families=dict(zip(langs, families, strict=True)),
        n_sentences={lang: len(texts) for lang, texts in sentences.items()},
        sets=described,
        eta2=eta2,
        p=p,
        top_neurons=top_neurons,
        random_neurons=random_neurons,
        stats=stats,
        config=config,
        replicates=replicates,
    )
    result.sets = result.summarise()
    end = time.perf_counter()
    result.timings = {"activations": measured - start, "summaries": end - measured, "total": end - start}
    return result


def activation_stats(
    lm: LoadedModel,
    sentences: Mapping[str, Sequence[str]],
    batch_size: int = 16,
    progress: bool = True,
    blocks: int = 1,
    seed: int = 0,
) -> spec.GroupStats:
    """Streaming statistics of every neuron's last-token activation, shape [L, m], per (language,
    block) group (language-major): each language's sentences fall into `blocks` blocks of nearly
    equal size in a seeded order (one block: per language)."""
    stats = spec.GroupStats(len(sentences) * blocks, (lm.num_layers, lm.mlp_width))
    layers = range(lm.num_layers)
    for group, (lang, texts) in enumerate(sentences.items()):
        block = torch.from_numpy(np.random.default_rng(seed + group).permutation(len(texts)) % blocks)
        for batch in capture(
            lm, texts, ("act",), batch_size=batch_size, desc=f"activations ({lang})", progress=progress
        ):
            stats.update(
                torch.stack([batch["act"][layer] for layer in layers], dim=1), group * blocks + block[batch.index]
            )
    return stats
