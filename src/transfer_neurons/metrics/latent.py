"""Latent-space analyses (docs/method.md section 5): plain functions over representation tensors, no model code.

Inputs are [n, dim] tensors of sentence representations (one row per sentence), or [L, n, dim]
stacks for the per-layer helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from transfer_neurons.artifacts.codec import JsonValue
from transfer_neurons.metrics.neighbours import (
    clamped,
    mknn_subsamples,
    mknn_swaps,
    mutual_knn,
    subsample_variance,
)
from transfer_neurons.metrics.uncertainty import Estimate, bca_interval, mutual_knn_rows, random_effect, t_test

Z95 = 1.959963984540054  # the normal quantile of a 95 % interval

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


def mean_mknn(en: torch.Tensor, l2: torch.Tensor, k: int, clamp: float | None = None) -> float:
    """Mutual kNN of [L, n, dim] stacks averaged over the layers."""
    en, l2 = clamped(en, clamp), clamped(l2, clamp)
    return float(np.mean([mutual_knn(en[layer], l2[layer], k) for layer in range(en.shape[0])]))


def mean_variance(
    en: torch.Tensor, l2: torch.Tensor, k: int, n_sub: int, seed: int, clamp: float | None = None
) -> float | None:
    """The subsampling variance of mean mutual kNN over layers (None without a subsampling plan)."""
    subsamples = mknn_subsamples(en, l2, k, n_sub, seed, clamp)
    return None if subsamples is None else float(subsample_variance(subsamples[0].mean(1), subsamples[1]))


def mknn_versus_random(
    en: torch.Tensor,
    compared: torch.Tensor,
    draws: Sequence[torch.Tensor],
    k: int,
    n_boot: int,
    seed: int,
    clamp: float | None = None,
    seeds: Sequence[int] | None = None,
) -> tuple[Estimate, Estimate]:
    """Mean mutual kNN over layers of the L2 states [L, n, dim] under a compared condition and under
    each of S random draws (each on every pair), against the English states `en`:

    - the compared condition's value with its subsampling interval, and its difference from the
      draws' mean (`effect_vs_random`) with one interval and p (`p_vs_random`) from a random-effect
      variance (`uncertainty.random_effect`): the unit part from the swap distribution between the
      compared condition and the first draw (`mknn_swaps`; half its variance per condition), the
      draw part from the spread of the S draws' values beyond that;
    - the random baseline's value (mean over draws) with its interval and each draw's value.
    No intervals and no p when `n_boot` is 0."""
    value = mean_mknn(en, compared, k, clamp)
    per_draw = np.array([mean_mknn(en, draw, k, clamp) for draw in draws])
    seeds = tuple(seeds if seeds is not None else range(len(draws)))
    mean = float(per_draw.mean())
    if n_boot == 0:
        random = Estimate(mean, seeds=seeds, per_seed=tuple(per_draw.tolist()))
        return Estimate(value, None, None, Estimate(value - mean)), random
    noise = float(np.var(mknn_swaps(en, compared, draws[0], k, n_boot, seed, clamp), ddof=1)) / 2
    unit = noise * (1 + 1 / len(draws))
    tested = random_effect(value - mean, unit, float("inf"), per_draw, noise).estimate()
    own, first = (mean_variance(en, states, k, n_boot, seed, clamp) for states in (compared, draws[0]))
    ci = None if own is None else t_test(value, own, float("inf"))[0]
    pooled = random_effect(mean, first or 0.0, float("inf"), per_draw, noise, contrast=False)
    random = Estimate(mean, None if first is None else pooled.estimate().ci, seeds=seeds, per_seed=tuple(per_draw))
    return Estimate(value, ci, tested.p_vs_random, replace(tested, p_vs_random=None)), random


def curve_intervals(
    units: dict[str, np.ndarray], mknn: np.ndarray, subsamples: tuple[np.ndarray, float] | None, n_boot: int, seed: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-layer 95 % bounds (low, high) of every curve of `pair_units`: mutual kNN [L] centred on its
    full-sample value with the subsampling standard error, the others (means of per-pair values) by
    BCa over the pairs; empty without resamples."""
    if n_boot == 0:
        return {}, {}
    low, high = {}, {}
    for name, values in units.items():
        if name == "mknn":
            if subsamples is None:
                continue
            se = np.sqrt(subsample_variance(*subsamples))
            lo, hi = mknn - Z95 * se, mknn + Z95 * se
        else:
            bounds = [bca_interval(row, n_boot, seed) for row in values]
            lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
        low[name], high[name] = lo.tolist(), hi.tolist()
    return low, high


def middle_layers(num_layers: int) -> tuple[list[int], list[int]]:
    """The middle third of the layers, range(L // 3, L - L // 3), and the outer ones."""
    middle = list(range(num_layers // 3, num_layers - num_layers // 3))
    return middle, [layer for layer in range(num_layers) if layer not in middle]


@dataclass(frozen=True)
class MiddlePeak(JsonValue):
    """Mean mutual kNN over the middle layers minus the mean over the outer ones (the paper's
    middle-layer alignment peak) with its interval, p-value and number of pairs."""

    value: float
    ci: tuple[float, float] | None
    p: float | None
    n: int
    middle: list[int]
    outer: list[int]


def middle_peak(mknn: np.ndarray, subsamples: tuple[np.ndarray, float] | None, n: int) -> MiddlePeak | None:
    """The middle-layer peak of the mutual-kNN curve [L]: mean over the middle layers minus the mean
    over the outer ones, its interval and p from one normal test with the subsampling standard error
    (none without subsamples); None with fewer than 3 layers (no outer layers)."""
    num_layers = len(mknn)
    middle, outer = middle_layers(num_layers)
    if not outer:
        return None
    value = float(middle_minus_outer(np.asarray(mknn), num_layers))
    if subsamples is None:
        return MiddlePeak(value, None, None, n, middle, outer)
    values, factor = subsamples
    variance = float(subsample_variance(middle_minus_outer(values, num_layers, axis=1), factor))
    ci, p = t_test(value, variance, float("inf"))
    return MiddlePeak(value, ci, p, n, middle, outer)


def middle_minus_outer(values: np.ndarray, num_layers: int, axis: int = 0) -> np.ndarray:
    """Mean over the middle layers minus the mean over the outer ones, along the layer `axis`."""
    middle, outer = middle_layers(num_layers)
    return np.take(values, middle, axis).mean(axis) - np.take(values, outer, axis).mean(axis)
