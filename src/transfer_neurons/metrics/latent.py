"""Latent-space analyses (DESIGN.md 3.4): plain functions over representation tensors, no model code.

Inputs are [n, dim] tensors of sentence representations (one row per sentence), or [L, n, dim]
stacks for the per-layer helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from transfer_neurons.metrics.uncertainty import (
    bootstrap_means,
    interval,
    mutual_knn_rows,
    paired_permutation_p,
    percentile_interval,
)

RESAMPLES_AT_ONCE = 256  # mutual kNN resamples computed together (memory: 256 x n x width x 4 bytes, a few times)

# the per-layer curves of a pair set, in the order of `pair_units` (`gap` follows them)
CURVES = (
    "mknn",
    "parallel_sim",
    "nonparallel_sim",
    "parallel_sim_centered",
    "nonparallel_sim_centered",
    "act_parallel_sim",
    "act_nonparallel_sim",
)


def remove_outliers(feats: torch.Tensor, q: float = 0.95) -> torch.Tensor:
    """Clamp values at the mean over rows of each row's q-quantile of |value| (PRH's outlier clamp)."""
    bound = torch.quantile(feats.abs().float(), q, dim=1).mean()
    return feats.clamp(-bound, bound)


def nearest_neighbours(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [n, k] of each row's k nearest rows by dot product, excluding the row itself."""
    sims = feats @ feats.t()
    sims.fill_diagonal_(float("-inf"))
    return sims.topk(k, dim=1).indices


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int = 10, clamp: float | None = None) -> float:
    """Mutual k-NN alignment of paired rows of `a` and `b` as in the Platonic Representation
    Hypothesis code: optional outlier clamp, L2-normalised rows, neighbours by dot product
    excluding self; mean over rows of |kNN_a(i) & kNN_b(i)| / k."""
    if a.shape[0] != b.shape[0]:
        raise ValueError("mutual_knn needs the same number of rows in a and b")
    if not 1 <= k < a.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of rows - 1 ({a.shape[0] - 1})")
    if clamp is not None:
        a, b = remove_outliers(a, clamp), remove_outliers(b, clamp)
    knn_a = nearest_neighbours(F.normalize(a.double(), dim=-1), k)
    knn_b = nearest_neighbours(F.normalize(b.double(), dim=-1), k)
    n = a.shape[0]
    mask_a = torch.zeros(n, n, dtype=torch.bool).scatter_(1, knn_a, True)
    mask_b = torch.zeros(n, n, dtype=torch.bool).scatter_(1, knn_b, True)
    return float((mask_a & mask_b).sum(1).double().mean() / k)


def paired_cosines(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor | None = None) -> np.ndarray:
    """Cosine similarity of each pair of rows [n]; with `reference` [dim], both sides are centred on it."""
    if reference is not None:
        a, b = a - reference, b - reference
    return F.cosine_similarity(a.double(), b.double(), dim=-1).numpy()


def paired_cosine(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Mean cosine similarity of paired rows; with `reference` [dim], both sides are centred on it."""
    return float(paired_cosines(a, b, reference).mean())


def centroid_cosines(states: dict[str, torch.Tensor], centre: bool = True) -> np.ndarray:
    """Cosine similarity [n_lang, n_lang] between language centroids; centred on their mean by default
    (raw cosines are close to 1 in models with a few massive dimensions)."""
    centroids = torch.stack([s.double().mean(0) for s in states.values()])
    if centre:
        centroids = centroids - centroids.mean(0)
    unit = F.normalize(centroids, dim=-1)
    return (unit @ unit.t()).numpy()


def pca_2d(states: dict[str, torch.Tensor], seed: int = 0) -> dict[str, np.ndarray]:
    """Project every language's rows to 2-D with one PCA fitted on all languages together."""
    stacked = torch.cat(list(states.values())).double().numpy()
    projected = PCA(n_components=2, random_state=seed).fit_transform(stacked)
    out, start = {}, 0
    for lang, rows in states.items():
        out[lang] = projected[start : start + rows.shape[0]]
        start += rows.shape[0]
    return out


def clamped(states: torch.Tensor, clamp: float | None) -> torch.Tensor:
    """[L, n, dim] states with the outlier clamp applied layer by layer (unchanged without a clamp)."""
    return states if clamp is None else torch.stack([remove_outliers(layer, clamp) for layer in states])


def pair_units(
    h: Sequence[torch.Tensor], act: Sequence[torch.Tensor], k: int = 10, clamp: float | None = None
) -> dict[str, np.ndarray]:
    """Per-pair values [L, n] of one en-L2 pair set; each per-layer curve is their mean over pairs.

    `h` and `act` are the (en, l2, en_np, l2_np) [L, n, dim] stacks of the states and of the MLP
    activations: parallel pairs (en[i], l2[i]), non-parallel pairs (en_np[i], l2_np[i]).
    `mknn`: each parallel pair's mutual-kNN row hits (after the optional clamp); cosines of the
    parallel and of the non-parallel pairs, raw and centred, and of their MLP activation vectors;
    `gap`: centred parallel minus centred non-parallel. The centring reference is the per-layer
    mean of all parallel sentences of both languages, computed once from the full sample: a
    bootstrap over pairs resamples these values and keeps that reference fixed.
    """
    en, l2, en_np, l2_np = h
    act_en, act_l2, act_en_np, act_l2_np = act
    hits_en, hits_l2 = clamped(en, clamp), clamped(l2, clamp)
    units: dict[str, list[np.ndarray]] = {key: [] for key in CURVES}
    for layer in range(en.shape[0]):
        reference = torch.cat([en[layer], l2[layer]]).double().mean(0)
        units["mknn"].append(mutual_knn_rows(hits_en[layer], hits_l2[layer], k))
        units["parallel_sim"].append(paired_cosines(en[layer], l2[layer]))
        units["nonparallel_sim"].append(paired_cosines(en_np[layer], l2_np[layer]))
        units["parallel_sim_centered"].append(paired_cosines(en[layer], l2[layer], reference))
        units["nonparallel_sim_centered"].append(paired_cosines(en_np[layer], l2_np[layer], reference))
        units["act_parallel_sim"].append(paired_cosines(act_en[layer], act_l2[layer]))
        units["act_nonparallel_sim"].append(paired_cosines(act_en_np[layer], act_l2_np[layer]))
    out = {key: np.stack(values) for key, values in units.items()}
    return out | {"gap": out["parallel_sim_centered"] - out["nonparallel_sim_centered"]}


def _order(states: torch.Tensor) -> torch.Tensor:
    """[n, n - 1] each row's other rows by cosine, nearest first (ties by row index)."""
    unit = F.normalize(states.double(), dim=-1)
    sims = (unit @ unit.t()).fill_diagonal_(float("-inf"))
    return sims.sort(dim=1, descending=True, stable=True).indices[:, :-1]


def _taken(order: torch.Tensor, counts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of each candidate that a unit's k nearest rows take in each resample [B, n, width]
    (candidates in `order`, each giving its copies until k rows are taken), and whether the
    candidates hold fewer than k rows [B, n]."""
    copies = counts[:, order]
    before = copies.cumsum(-1, dtype=torch.int32) - copies
    return (k - before).clamp(min=0).minimum(copies), before[..., -1] + copies[..., -1] < k


def _resampled_mknn(
    order_a: torch.Tensor, order_b: torch.Tensor, counts: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual kNN of the resamples given by unit `counts` [B, n] from each unit's candidate
    neighbours on both sides, and which resamples' candidates were too few for some unit."""
    match = order_a[:, :, None] == order_b[:, None, :]  # [n, width, width]: the same unit on both sides
    where_b = match.int().argmax(-1).expand(len(counts), -1, -1)
    taken_a, short_a = _taken(order_a, counts, k)
    taken_b, short_b = _taken(order_b, counts, k)
    hits = (taken_a.minimum(taken_b.gather(-1, where_b)) * match.any(-1)).sum(-1)  # per unit [B, n]
    value = (counts * hits).sum(-1).double() / (counts.shape[1] * k)
    return value, ((short_a | short_b) & (counts > 0)).any(-1)


def mknn_resamples(
    en: torch.Tensor,
    l2: torch.Tensor,
    k: int,
    index: np.ndarray,
    clamp: float | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Mutual kNN of every layer of [L, n, dim] stacks recomputed on each resample of pairs
    [n_boot, L]; one `index` [n_boot, n] shared by all layers, the clamp applied to the full states.

    A resample's rows are its pairs with their copies; a row's k nearest rows exclude the copies of
    its own pair, and the tied copies of one neighbour are taken in the same (row) order on both
    sides, so a row hit counts each copy taken on both sides (`topk` would pick tied copies
    independently per side and undercount when a neighbour's copies straddle the k-th place).
    Only each pair's `width` nearest pairs are examined (default 2k + 10: memory and time
    O(n_boot * n * width) instead of O(n_boot * n^2)); a resample where they hold fewer than k
    rows for some pair is recomputed with all pairs, so the result is exact.
    """
    en, l2 = clamped(en, clamp), clamped(l2, clamp)
    n = en.shape[1]
    rows = torch.from_numpy(index).long()
    counts = torch.zeros(len(index), n, dtype=torch.int32).scatter_add_(
        1, rows, torch.ones_like(rows, dtype=torch.int32)
    )
    width = min(n - 1, width or 2 * k + 10)
    out = np.zeros((len(index), en.shape[0]))
    for layer in range(en.shape[0]):
        order_a, order_b = _order(en[layer]), _order(l2[layer])
        for start in range(0, len(index), RESAMPLES_AT_ONCE):
            chunk = counts[start : start + RESAMPLES_AT_ONCE]
            values, short = _resampled_mknn(order_a[:, :width], order_b[:, :width], chunk, k)
            if width < n - 1 and short.any():
                values[short] = _resampled_mknn(order_a, order_b, chunk[short], k)[0]
            out[start : start + len(chunk), layer] = values.numpy()
    return out


def curve_intervals(
    units: dict[str, np.ndarray], mknn_boot: np.ndarray, index: np.ndarray
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-layer 95 % bounds (low, high) of every curve of `pair_units`: mutual kNN from its
    recomputations on the resamples `mknn_boot` [n_boot, L], the others from bootstrap means of
    their per-pair values on the same resamples `index`; empty without resamples."""
    if len(index) == 0:
        return {}, {}
    low, high = {}, {}
    for name, values in units.items():
        samples = mknn_boot if name == "mknn" else bootstrap_means(values.T, index)
        lo, hi = percentile_interval(samples)
        low[name], high[name] = lo.tolist(), hi.tolist()
    return low, high


def peak_interval(mknn_boot: np.ndarray) -> tuple[int, int] | None:
    """Percentile interval (widened to whole layers) of the layer where mutual kNN peaks, over
    the resamples `mknn_boot` [n_boot, L]; None without resamples."""
    if len(mknn_boot) == 0:
        return None
    low, high = percentile_interval(mknn_boot.argmax(axis=1).astype(np.float64))
    return int(np.floor(low)), int(np.ceil(high))


def middle_layers(num_layers: int) -> tuple[list[int], list[int]]:
    """The middle third of the layers, range(L // 3, L - L // 3), and the outer ones."""
    middle = list(range(num_layers // 3, num_layers - num_layers // 3))
    return middle, [layer for layer in range(num_layers) if layer not in middle]


@dataclass(frozen=True)
class Peak:
    """The layer where mutual kNN peaks and the percentile interval of that layer over resamples."""

    layer: int
    ci: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "ci": None if self.ci is None else list(self.ci)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Peak:
        ci = data["ci"]
        return cls(int(data["layer"]), None if ci is None else (int(ci[0]), int(ci[1])))


@dataclass(frozen=True)
class MiddlePeak:
    """Mean mutual kNN over the middle layers minus the mean over the outer ones (the paper's
    middle-layer alignment peak) with its interval, p-value and number of pairs."""

    value: float
    ci: tuple[float, float] | None
    p: float
    n: int
    middle: list[int]
    outer: list[int]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ci": None if self.ci is None else list(self.ci)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MiddlePeak:
        ci = data["ci"]
        return cls(**{**data, "ci": None if ci is None else (float(ci[0]), float(ci[1]))})


def middle_peak(hits: np.ndarray, mknn_boot: np.ndarray, seed: int) -> MiddlePeak | None:
    """The middle-layer peak from the row hits [L, n] of `pair_units` and the mutual kNN recomputed
    on resamples [n_boot, L]: the interval from those recomputations (None without), p from a
    paired permutation test of each pair's middle-minus-outer row hits against 0; None with fewer
    than 3 layers (no outer layers)."""
    num_layers = hits.shape[0]
    middle, outer = middle_layers(num_layers)
    if not outer:
        return None
    per_pair = middle_minus_outer(hits, num_layers)
    ci = interval(middle_minus_outer(mknn_boot, num_layers, axis=1)) if len(mknn_boot) else None
    return MiddlePeak(float(per_pair.mean()), ci, paired_permutation_p(per_pair, seed), len(per_pair), middle, outer)


def middle_minus_outer(values: np.ndarray, num_layers: int, axis: int = 0) -> np.ndarray:
    """Mean over the middle layers minus the mean over the outer ones, along the layer `axis`."""
    middle, outer = middle_layers(num_layers)
    return np.take(values, middle, axis).mean(axis) - np.take(values, outer, axis).mean(axis)
