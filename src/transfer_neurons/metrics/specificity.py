"""Language specificity of neurons (DESIGN.md 3.5): plain functions over activations, no model code.

`GroupStats` keeps, per group, the count, sum and sum of squares of every feature (float64), so
memory is O(groups x features) whatever the number of sentences. From these sufficient
statistics come the correlation ratio ``eta^2 = SS_between / SS_total`` and the one-way ANOVA
p-value (F distribution from scipy). Statistics of languages can be merged into coarser labels
(target language vs rest, language families) without another pass over the data.

The summaries of a neuron list (mean and median eta^2, shares with eta^2 > t and p < alpha) come
with bootstrap intervals over its neurons and a comparison with a multi-seed random baseline
(DESIGN.md 3.8): `compare_to_random`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch
from scipy import stats

from transfer_neurons.errors import InputError
from transfer_neurons.metrics.uncertainty import CHUNK, PERMUTATIONS, Estimate, interval, resample_indices

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
        """Merged statistics: old group g goes into new group ``mapping[g]`` (e.g. languages -> families)."""
        if len(mapping) != self.n_groups:
            raise ValueError("regroup needs one new group index per old group")
        index = torch.as_tensor(list(mapping), dtype=torch.long)
        merged = GroupStats(int(index.max()) + 1, self.shape)
        merged.shift = self.shift
        merged.count.index_add_(0, index, self.count)
        merged.sum.index_add_(0, index, self.sum)
        merged.sumsq.index_add_(0, index, self.sumsq)
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


def parse_families(spec: str | None) -> dict[str, str]:
    """Parse 'ja=Japonic,ko=Koreanic' into a dict."""
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        lang, sep, family = part.partition("=")
        if not sep or not lang.strip() or not family.strip():
            raise InputError(f"--families '{spec}' must look like ja=Japonic,ko=Koreanic")
        out[lang.strip()] = family.strip()
    return out


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


def resampled(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`values` [..., n] at the bootstrap resamples `index` [..., n_boot, n] (leading axes
    broadcast): [..., n_boot, n]. One indexing operation, no loop over resamples."""
    return np.take_along_axis(np.asarray(values)[..., None, :], index, axis=-1)


def permutation_p_rows(a: np.ndarray, b: np.ndarray, seed: int, n_perm: int = PERMUTATIONS) -> np.ndarray:
    """`uncertainty.permutation_p(a[k], b[k], seed)` for every row k of a [K, n] and b [K, m]: the
    same label shuffles (drawn once) serve every row, and each shuffle's mean of a's side comes
    from one matrix product, so K rows cost about one test."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = np.concatenate([a, b], axis=1)  # [K, N]
    n, m = a.shape[1], b.shape[1]
    if n == 0 or m == 0:
        return np.ones(len(a))
    observed = np.abs(a.mean(axis=1) - b.mean(axis=1))
    total, hits = pooled.sum(axis=1), np.zeros(len(a), dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = np.arange(n + m, dtype=np.int32)
    for start in range(0, n_perm, CHUNK * 16):
        rows = min(CHUNK * 16, n_perm - start)
        first = rng.permuted(np.tile(order, (rows, 1)), axis=1)[:, :n]  # as permutation_p shuffles
        chosen = np.zeros((rows, n + m))
        np.put_along_axis(chosen, first, 1.0, axis=1)
        side = chosen @ pooled.T  # [rows, K]: sum of a's side
        hits += (np.abs(side / n - (total - side) / m) >= observed - 1e-12).sum(axis=0)
    return np.where(np.ptp(pooled, axis=1) == 0, 1.0, (1 + hits) / (1 + n_perm))


def compare_to_random(
    top: Mapping[Key, Values],
    random: Mapping[Key, Values],
    seeds: Sequence[int],
    n_boot: int,
    seed: int,
    thresholds: Sequence[float] = (0.1, 0.25),
    alpha: float = 0.05,
) -> dict[Key, tuple[dict[str, Estimate], dict[str, Estimate]]]:
    """Per key, the `statistics` of a neuron list (`top[key]`: eta^2 and p, [n] each) and of its
    random baseline (`random[key]`: [S, n] each, draw s seeded `seeds[s]`) as Estimates.

    Intervals: percentile bootstrap over the neurons, `n_boot` resamples (none for 0); the top
    resampled with `resample_indices(n, n_boot, seed)`, each draw on its own (seed + 1). The
    baseline's value is the mean over its draws of each statistic, with each draw's value. The top's
    mean and shares (means of per-neuron values) add `effect_vs_random` (top minus baseline, interval
    from the two independent resamples) and `p_vs_random`, the label-permutation p of
    `uncertainty.permutation_p` (top neurons vs all drawn ones), as `unpaired_difference` does; the
    median has no test. One set of shuffles serves every key: all need the same n and S.
    """
    tops = {key: neuron_values(*values, thresholds, alpha) for key, values in top.items()}
    draws = {key: neuron_values(*random[key], thresholds, alpha) for key in top}
    rows = [(key, name) for key, values in tops.items() for name in values]
    p_values = permutation_p_rows(
        np.stack([tops[key][name] for key, name in rows]),
        np.stack([draws[key][name].reshape(-1) for key, name in rows]),
        seed,
    )
    tested = dict(zip(rows, p_values.tolist(), strict=True))
    out = {}
    for key, (eta2, p) in top.items():
        draw_eta2, draw_p = (np.asarray(x, dtype=np.float64) for x in random[key])
        value, per_seed = statistics(eta2, p, thresholds, alpha), statistics(draw_eta2, draw_p, thresholds, alpha)
        samples: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        if n_boot:
            n, s = len(eta2), len(draw_eta2)
            index = resample_indices(n, n_boot, seed)
            draw_index = resample_indices(n, s * n_boot, seed + 1).reshape(s, n_boot, n)
            boot_top = statistics(resampled(eta2, index), resampled(p, index), thresholds, alpha)
            boot_random = statistics(resampled(draw_eta2, draw_index), resampled(draw_p, draw_index), thresholds, alpha)
            samples = (boot_top, {name: v.mean(axis=0) for name, v in boot_random.items()})
        top_estimates, random_estimates = {}, {}
        for name in value:
            ci, random_ci, effect_ci = (None, None, None) if samples is None else _intervals(samples, name)
            baseline = Estimate(
                float(per_seed[name].mean()), random_ci, seeds=tuple(seeds), per_seed=tuple(per_seed[name].tolist())
            )
            effect = Estimate(float(value[name]) - baseline.value, effect_ci) if (key, name) in tested else None
            top_estimates[name] = Estimate(float(value[name]), ci, tested.get((key, name)), effect)
            random_estimates[name] = baseline
        out[key] = (top_estimates, random_estimates)
    return out


def _intervals(
    samples: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], name: str
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """Intervals of the top, of the baseline and of their difference from bootstrap samples."""
    top, random = samples[0][name], samples[1][name]
    return interval(top), interval(random), interval(top - random)
