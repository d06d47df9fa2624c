"""Latent-space analyses (DESIGN.md 3.4): plain functions over representation tensors, no model code.

Inputs are [n, dim] tensors of sentence representations (one row per sentence), or [L, n, dim]
stacks for the per-layer helpers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA


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


def paired_cosine(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Mean cosine similarity of paired rows; with `reference` [dim], both sides are centred on it."""
    if reference is not None:
        a, b = a - reference, b - reference
    return float(F.cosine_similarity(a.double(), b.double(), dim=-1).mean())


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


def pair_metrics(
    en: torch.Tensor,
    l2: torch.Tensor,
    en_np: torch.Tensor,
    l2_np: torch.Tensor,
    act_en: torch.Tensor | None = None,
    act_l2: torch.Tensor | None = None,
    act_en_np: torch.Tensor | None = None,
    act_l2_np: torch.Tensor | None = None,
    k: int = 10,
    clamp: float | None = None,
) -> dict[str, list[float]]:
    """Per-layer curves for one en-L2 language pair from [L, n, dim] stacks.

    Parallel pairs (en[i], l2[i]) and non-parallel pairs (en_np[i], l2_np[i]); centred variants
    subtract the per-layer mean of all parallel sentences of both languages.
    """
    curves: dict[str, list[float]] = {
        key: []
        for key in (
            "mknn",
            "parallel_sim",
            "nonparallel_sim",
            "parallel_sim_centered",
            "nonparallel_sim_centered",
        )
    }
    for layer in range(en.shape[0]):
        reference = torch.cat([en[layer], l2[layer]]).double().mean(0)
        curves["mknn"].append(mutual_knn(en[layer], l2[layer], k, clamp))
        curves["parallel_sim"].append(paired_cosine(en[layer], l2[layer]))
        curves["nonparallel_sim"].append(paired_cosine(en_np[layer], l2_np[layer]))
        curves["parallel_sim_centered"].append(paired_cosine(en[layer], l2[layer], reference))
        curves["nonparallel_sim_centered"].append(paired_cosine(en_np[layer], l2_np[layer], reference))
    if act_en is not None and act_l2 is not None and act_en_np is not None and act_l2_np is not None:
        curves["act_parallel_sim"] = [paired_cosine(x, y) for x, y in zip(act_en, act_l2, strict=True)]
        curves["act_nonparallel_sim"] = [paired_cosine(x, y) for x, y in zip(act_en_np, act_l2_np, strict=True)]
    return curves
