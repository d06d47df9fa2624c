"""Language specificity of neurons (docs/method.md section 6): plain functions over activations, no model code.

`GroupStats` keeps, per group, the count, sum and sum of squares of every feature (float64), so
memory is O(groups x features) whatever the number of sentences. From these sufficient
statistics come the correlation ratio ``eta^2 = SS_between / SS_total`` and the one-way ANOVA
p-value (F distribution from scipy). Statistics of languages can be merged into coarser labels
(target language vs rest, language families) without another pass over the data.

The summaries of a neuron list (mean and median eta^2, shares with eta^2 > t and p < alpha) come
with intervals over the sentences, by a delete-one-block jackknife: the sentences of each language
fall into G blocks, the statistics are kept per (language, block), and every summary is recomputed
with each block left out (`block_replicates`); a set is compared with a multi-seed random baseline
of the same shape, the draws a random effect (`compare_to_random`, docs/method.md section 8).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch
from scipy import stats

from transfer_neurons.errors import InputError
from transfer_neurons.metrics.uncertainty import Estimate, random_effect, t_test

Key = TypeVar("Key", bound=Hashable)
Values = tuple[np.ndarray, np.ndarray]  # (eta^2, ANOVA p) of listed neurons, same shape

# ISO 639-1 code -> language family (genus level for Indo-European); override per run if needed.
FAMILIES = {
    "en": "Germanic",
    "de": "Germanic",
    "nl": "Germanic",
    "sv": "Germanic",
    "da": "Germanic",
    "no": "Germanic",
    "nb": "Germanic",
    "is": "Germanic",
    "af": "Germanic",
    "it": "Romance",
    "fr": "Romance",
    "es": "Romance",
    "pt": "Romance",
    "ro": "Romance",
    "ca": "Romance",
    "ru": "Slavic",
    "uk": "Slavic",
    "pl": "Slavic",
    "cs": "Slavic",
    "sk": "Slavic",
    "bg": "Slavic",
    "sr": "Slavic",
    "hr": "Slavic",
    "sl": "Slavic",
    "hi": "Indo-Aryan",
    "bn": "Indo-Aryan",
    "ur": "Indo-Aryan",
    "mr": "Indo-Aryan",
    "ne": "Indo-Aryan",
    "el": "Hellenic",
    "fa": "Iranian",
    "ja": "Japonic",
    "ko": "Koreanic",
    "zh": "Sinitic",
    "ar": "Semitic",
    "he": "Semitic",
    "tr": "Turkic",
    "kk": "Turkic",
    "uz": "Turkic",
    "fi": "Uralic",
    "et": "Uralic",
    "hu": "Uralic",
    "vi": "Austroasiatic",
    "th": "Kra-Dai",
    "id": "Austronesian",
    "ms": "Austronesian",
    "tl": "Austronesian",
    "sw": "Niger-Congo",
    "yo": "Niger-Congo",
    "zu": "Niger-Congo",
    "ta": "Dravidian",
    "te": "Dravidian",
}


class GroupStats:
    """Streaming per-group count, sum and sum of squares of features of any shape (float64).

    Values are shifted by the first chunk's per-feature mean before they are accumulated (eta^2
    and F do not change under a shift; it keeps ``sumsq - sum^2 / n`` accurate).
    """

    def __init__(self, n_groups: int, shape: Sequence[int] = ()):
        self.n_groups = n_groups
        self.shape = tuple(shape)
        self.count = torch.zeros(n_groups, dtype=torch.float64)
        self.sum = torch.zeros(n_groups, *self.shape, dtype=torch.float64)
        self.sumsq = torch.zeros(n_groups, *self.shape, dtype=torch.float64)
        self.shift: torch.Tensor | None = None

    def update(self, values: torch.Tensor, groups: torch.Tensor | int) -> None:
        """Add rows `values` [n, *shape] whose group indices are `groups` ([n] ints, or one int for all)."""
        x = values.detach().to("cpu", torch.float64)
        if x.shape[1:] != self.shape:
            raise ValueError(f"values of shape {tuple(x.shape[1:])} do not match the statistics' {self.shape}")
        if isinstance(groups, int):
            groups = torch.full((x.shape[0],), groups, dtype=torch.long)
        groups = torch.as_tensor(groups, dtype=torch.long).cpu()
        if groups.numel() and not 0 <= int(groups.min()) <= int(groups.max()) < self.n_groups:
            raise ValueError(f"group indices must lie in 0..{self.n_groups - 1}")
        if x.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = x.mean(0)
        x = x - self.shift
        self.count.index_add_(0, groups, torch.ones(len(groups), dtype=torch.float64))
        self.sum.index_add_(0, groups, x)
        self.sumsq.index_add_(0, groups, x * x)

    def regroup(self, mapping: Sequence[int]) -> GroupStats:
        """Merged statistics: old group g goes into new group ``mapping[g]`` (e.g. languages -> families);
        a group mapped to -1 is left out (a jackknife block)."""
        if len(mapping) != self.n_groups:
            raise ValueError("regroup needs one new group index per old group")
        index = torch.as_tensor(list(mapping), dtype=torch.long)
        kept = (index >= 0).nonzero().flatten()
        merged = GroupStats(int(index.max()) + 1, self.shape)
        merged.shift = self.shift
        merged.count.index_add_(0, index[kept], self.count[kept])
        merged.sum.index_add_(0, index[kept], self.sum[kept])
        merged.sumsq.index_add_(0, index[kept], self.sumsq[kept])
        return merged

    def sums_of_squares(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(SS_between, SS_within) per feature, over the non-empty groups."""
        present = self.count > 0
        n = self.count[present].view(-1, *[1] * len(self.shape))
        s, q = self.sum[present], self.sumsq[present]
        total = s.sum(0)
        within = (q - s * s / n).sum(0).clamp(min=0)
        between = ((s * s / n).sum(0) - total * total / n.sum()).clamp(min=0)
        return between, within

    def eta_squared(self) -> torch.Tensor:
        """Correlation ratio SS_between / SS_total per feature; 0 for a constant feature."""
        between, within = self.sums_of_squares()
        total = between + within
        return torch.where(total > 0, between / total.clamp(min=1e-300), torch.zeros_like(total))

    def anova_p(self) -> torch.Tensor:
        """One-way ANOVA p-value per feature (1 for a constant feature, 0 when groups do not vary inside)."""
        k = int((self.count > 0).sum())
        n = float(self.count.sum())
        if k < 2 or n <= k:
            raise ValueError(f"ANOVA needs at least 2 non-empty groups and more rows than groups (got {k}, {n:g})")
        between, within = self.sums_of_squares()
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (between.numpy() / (k - 1)) / (within.numpy() / (n - k))
        p = stats.f.sf(f, k - 1, n - k)
        p = np.where(between.numpy() == 0, 1.0, np.where(np.isnan(p), 0.0, p))
        return torch.from_numpy(np.asarray(p, dtype=np.float64))

    @property
    def mean(self) -> torch.Tensor:
        """Per-group mean [groups, *shape] (NaN for an empty group)."""
        n = self.count.view(-1, *[1] * len(self.shape))
        return self.sum / n + (self.shift if self.shift is not None else 0.0)


def families_for(langs: Sequence[str], overrides: dict[str, str] | None = None) -> list[str]:
    """The family of each language: `overrides` first, then the built-in table."""
    table = {**FAMILIES, **(overrides or {})}
    missing = [lang for lang in langs if lang not in table]
    if missing:
        raise InputError(
            f"no built-in language family for {', '.join(missing)}; give --families "
            + ",".join(f"{lang}=NAME" for lang in missing)
        )
    return [table[lang] for lang in langs]


def labelings(langs: Sequence[str], families: Sequence[str], targets: Sequence[str]) -> dict[str, list[int]]:
    """Group mappings from per-language groups: ``target:<lang>`` (1 = that language, 0 = rest),
    ``family`` (one group per family, when there are at least two) and ``language``."""
    out = {f"target:{t}": [int(lang == t) for lang in langs] for t in targets}
    names = list(dict.fromkeys(families))
    if len(names) >= 2:
        out["family"] = [names.index(f) for f in families]
    out["language"] = list(range(len(langs)))
    return out


def labelling_tensors(
    stats: GroupStats, langs: Sequence[str], families: Sequence[str], targets: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-neuron eta^2 ([L, m] float32) and ANOVA p (float64) under each labelling, by key:
    `target_<lang>` for each target language (that language vs the rest), `family` (with at
    least two families) and `language`."""
    eta2, p = {}, {}
    for name, mapping in labelings(langs, families, targets).items():
        merged = stats.regroup(mapping)
        key = name.replace(":", "_")
        eta2[key], p[key] = merged.eta_squared().float(), merged.anova_p()
    return eta2, p


def neuron_values(
    eta2: np.ndarray, p: np.ndarray, thresholds: Sequence[float] = (0.1, 0.25), alpha: float = 0.05
) -> dict[str, np.ndarray]:
    """Per-neuron values whose mean over the neurons is a summary: eta^2 itself (`mean_eta2`) and
    1.0 where eta^2 > t and p < alpha, else 0.0 (`share_eta2_gt_<t>`); same shape as `eta2`."""
    eta2, p = np.asarray(eta2, dtype=np.float64), np.asarray(p, dtype=np.float64)
    significant = p < alpha
    return {"mean_eta2": eta2} | {
        f"share_eta2_gt_{t:g}": ((eta2 > t) & significant).astype(np.float64) for t in thresholds
    }


def statistics(
    eta2: np.ndarray, p: np.ndarray, thresholds: Sequence[float] = (0.1, 0.25), alpha: float = 0.05
) -> dict[str, np.ndarray]:
    """mean_eta2, median_eta2 and share_eta2_gt_<t> over the last axis (the neurons) of any shape.
    The median of an even count is the lower middle value (as `torch.median`)."""
    values = neuron_values(eta2, p, thresholds, alpha)
    means = {name: v.mean(axis=-1) for name, v in values.items()}
    median = np.quantile(values["mean_eta2"], 0.5, axis=-1, method="lower")
    return {"mean_eta2": means.pop("mean_eta2"), "median_eta2": median} | means


def summarize(
    eta2: torch.Tensor,
    p: torch.Tensor,
    neurons: Sequence[tuple[int, int]],
    thresholds: Sequence[float] = (0.1, 0.25),
    alpha: float = 0.05,
) -> dict[str, float]:
    """Mean and median eta^2 of the listed (layer, neuron) and the share with eta^2 > t and p < alpha."""
    if not neurons:
        raise ValueError("summarize needs at least one neuron")
    layer, neuron = (torch.tensor(x) for x in zip(*neurons, strict=True))
    e, q = eta2[layer, neuron].double().numpy(), p[layer, neuron].double().numpy()
    return {"n": len(neurons)} | {name: float(v) for name, v in statistics(e, q, thresholds, alpha).items()}


def blocks_for(counts: Sequence[int], most: int = 10) -> int:
    """The number of jackknife blocks: `most`, or fewer when a language has fewer sentences (at least 2)."""
    return max(2, min(most, *counts))


def block_mapping(mapping: Sequence[int], blocks: int, left_out: int | None = None) -> list[int]:
    """A mapping of (language, block) groups (language-major) from a mapping of languages; the groups
    of block `left_out` dropped (-1)."""
    return [label if b != left_out else -1 for label in mapping for b in range(blocks)]


def block_replicates(
    stats: GroupStats,
    mapping: Sequence[int],
    blocks: int,
    neurons: Mapping[Key, torch.Tensor],
    thresholds: Sequence[float] = (0.1, 0.25),
    alpha: float = 0.05,
) -> dict[Key, dict[str, np.ndarray]]:
    """For each neuron list (`neurons[key]`: [..., n, 2] (layer, neuron) indices), its `statistics`
    recomputed with each block of sentences left out: [blocks, ...] per statistic. `stats` holds the
    (language, block) groups, `mapping` gives each language's label (target vs rest, family, ...)."""
    out: dict[Key, dict[str, list[np.ndarray]]] = {key: {} for key in neurons}
    for block in range(blocks):
        merged = stats.regroup(block_mapping(mapping, blocks, block))
        eta2, p = merged.eta_squared(), merged.anova_p()
        for key, index in neurons.items():
            layer, neuron = index.unbind(-1)
            values = statistics(eta2[layer, neuron].numpy(), p[layer, neuron].numpy(), thresholds, alpha)
            for name, value in values.items():
                out[key].setdefault(name, []).append(value)
    return {key: {name: np.stack(v) for name, v in per.items()} for key, per in out.items()}


def jackknife_variance(replicates: np.ndarray) -> np.ndarray:
    """The delete-one-block jackknife variance from replicates [G, ...]: (G - 1) / G x sum of squares."""
    g = replicates.shape[0]
    return (g - 1) / g * ((replicates - replicates.mean(axis=0)) ** 2).sum(axis=0)


def compare_to_random(
    top: Mapping[Key, Values],
    random: Mapping[Key, Values],
    replicates: Mapping[Key, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] | None,
    seeds: Sequence[int],
    thresholds: Sequence[float] = (0.1, 0.25),
    alpha: float = 0.05,
) -> dict[Key, tuple[dict[str, Estimate], dict[str, Estimate]]]:
    """Per key, the `statistics` of a neuron list (`top[key]`: eta^2 and p, [n] each) and of its
    random baseline (`random[key]`: [S, n] each, draw s seeded `seeds[s]`) as Estimates.

    Intervals and tests come from `replicates[key]`: the top's and the draws' statistics with each
    block of sentences left out ([G] and [G, S] per statistic, `block_replicates`); none when None.
    The top's value has a t interval (G - 1 df) from the jackknife variance; its mean and shares add
    `effect_vs_random`, the top minus the draws' mean, with interval and `p_vs_random` from one test
    in which the draws are a random effect (`uncertainty.random_effect`: the jackknife variance of
    the difference, plus the draws' spread beyond their own jackknife variance); the median has no
    test. The baseline's value is the mean over its draws, with each draw's value."""
    out = {}
    for key, (eta2, p) in top.items():
        value = statistics(eta2, p, thresholds, alpha)
        draw_eta2, draw_p = (np.asarray(x, dtype=np.float64) for x in random[key])
        per_draw = statistics(draw_eta2, draw_p, thresholds, alpha)
        top_estimates, random_estimates = {}, {}
        for name in value:
            draws = per_draw[name]
            mean = float(draws.mean())
            if replicates is None:
                top_estimates[name] = Estimate(float(value[name]))
                random_estimates[name] = Estimate(mean, seeds=tuple(seeds), per_seed=tuple(draws.tolist()))
                continue
            own, others = replicates[key][0][name], replicates[key][1][name]  # [G], [G, S]
            df = own.shape[0] - 1
            noise = float(jackknife_variance(others).mean())
            ci, _ = t_test(float(value[name]), float(jackknife_variance(own)), df)
            pooled = random_effect(mean, float(jackknife_variance(others.mean(axis=1))), df, draws, noise, False)
            random_estimates[name] = Estimate(mean, pooled.estimate().ci, seeds=tuple(seeds), per_seed=tuple(draws))
            if name == "median_eta2":
                top_estimates[name] = Estimate(float(value[name]), ci)
                continue
            difference = float(value[name]) - mean
            unit = float(jackknife_variance(own - others.mean(axis=1)))
            tested = random_effect(difference, unit, df, draws, noise).estimate()
            effect = Estimate(tested.value, tested.ci)
            top_estimates[name] = Estimate(float(value[name]), ci, tested.p_vs_random, effect)
        out[key] = (top_estimates, random_estimates)
    return out
