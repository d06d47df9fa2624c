"""Language specificity of neurons (DESIGN.md 3.5): plain functions over activations, no model code.

`GroupStats` keeps, per group, the count, sum and sum of squares of every feature (float64), so
memory is O(groups x features) whatever the number of sentences. From these sufficient
statistics come the correlation ratio ``eta^2 = SS_between / SS_total`` and the one-way ANOVA
p-value (F distribution from scipy). Statistics of languages can be merged into coarser labels
(target language vs rest, language families) without another pass over the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from transfer_neurons.errors import InputError

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
    e, q = eta2[layer, neuron].double(), p[layer, neuron].double()
    out = {"n": len(neurons), "mean_eta2": float(e.mean()), "median_eta2": float(e.median())}
    for t in thresholds:
        out[f"share_eta2_gt_{t:g}"] = float(((e > t) & (q < alpha)).double().mean())
    return out
