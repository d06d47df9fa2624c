"""Subsets and swaps of sentence pairs for the uncertainty of mutual kNN (docs/method.md section 8):
nearest-neighbour statistics on which the bootstrap with replacement fails (Abadie and Imbens 2008).

- `mknn_subsamples`: mutual kNN on subsets of pairs drawn without replacement at a fixed
  neighbourhood fraction, whose spread gives a standard error centred on the full-sample value;
- `mknn_swaps`: the randomization distribution of a difference between two conditions measured on
  the same pairs, each swap exchanging some pairs' states between the conditions.

Both work from each row's nearest candidates (a window of a few times k), with the exact
computation as fallback, so that they cost O(resamples x n x window), not O(resamples x n^2).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RESAMPLES_AT_ONCE = 64  # subsets or swaps computed together (memory: 64 x n x width x 8 bytes, a few times)


def remove_outliers(feats: torch.Tensor, q: float = 0.95) -> torch.Tensor:
    """Clamp values at the mean over rows of each row's q-quantile of |value| (PRH's outlier clamp)."""
    bound = torch.quantile(feats.abs().float(), q, dim=1).mean()
    return feats.clamp(-bound, bound)


def clamped(states: torch.Tensor, clamp: float | None) -> torch.Tensor:
    """[L, n, dim] states with the outlier clamp applied layer by layer (unchanged without a clamp)."""
    return states if clamp is None else torch.stack([remove_outliers(layer, clamp) for layer in states])


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


def _unit_gram(states: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [n, n] of the rows of `states` [n, dim] (float64)."""
    unit = F.normalize(states.double(), dim=-1)
    return unit @ unit.t()


def _window(k: int, total: int) -> int:
    """Candidates kept per row: enough that k chosen ones almost always lie among them (else the
    computation falls back to every candidate)."""
    return min(total, 2 * k + 10)


def _first(valid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k valid candidates of each row ([..., width] bool, nearest first), and whether a
    row has fewer than k valid ones in its window."""
    rank = valid.cumsum(-1)
    return valid & (rank <= k), rank[..., -1] < k


def _subset_mknn(
    member: torch.Tensor, near_a: torch.Tensor, near_b: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual kNN of subsets of pairs (`member` [B, n] bool) from each pair's nearest other pairs on
    both sides ([n, width], nearest first): a member's k neighbours are its first k candidates that
    are members. Also which subsets had a member with fewer than k members in its window."""
    chosen_a, short_a = _first(member[:, near_a], k)
    chosen_b, short_b = _first(member[:, near_b], k)
    match = (near_a[:, :, None] == near_b[:, None, :]).double()  # [n, width, width]: the same pair
    hits = torch.einsum("bip,ipq,biq->bi", chosen_a.double(), match, chosen_b.double()) * member
    short = ((short_a | short_b) & member).any(-1)
    return hits.sum(-1) / (member.sum(-1) * k), short


def _nearest(states: torch.Tensor, width: int) -> torch.Tensor:
    """[n, width] each row's nearest other rows by cosine, nearest first."""
    return _unit_gram(states).fill_diagonal_(float("-inf")).topk(width, dim=1).indices


def subsample_plan(n: int, k: int) -> tuple[int, int, float] | None:
    """(r, k_r, factor) of the mutual-kNN subsampling interval: subsets of r = n (k - 1) / k pairs with
    k_r = k - 1 neighbours keep the neighbourhood fraction k / n; at a fixed fraction the statistic's
    variance scales as 1 / (n k), so the subsets' variance is `factor` = n k / (r k_r) - 1 times that
    of the full sample. None when k < 2 or the subsets would be too small."""
    k_r = k - 1
    r = round(n * k_r / k)
    if k_r < 1 or r <= k_r + 1 or r >= n:
        return None
    return r, k_r, n * k / (r * k_r) - 1


def mknn_subsamples(
    en: torch.Tensor, l2: torch.Tensor, k: int, n_sub: int, seed: int, clamp: float | None = None
) -> tuple[np.ndarray, float] | None:
    """Mutual kNN of every layer of [L, n, dim] stacks on `n_sub` random subsets of pairs without
    replacement (`subsample_plan`; one subset serves every layer): [n_sub, L] and the factor by which
    their variance exceeds the full sample's. A spread-only procedure: the variance of any smooth
    function of the curves (their mean, the middle-minus-outer peak) is that of the subsets' values
    divided by the factor (Politis, Romano and Wolf 1999, subsampling at a known rate; the rate and
    the coverage are checked by simulation in `transfer_neurons.calibration`). None without a plan."""
    n = en.shape[1]
    plan = subsample_plan(n, k)
    if plan is None or n_sub < 2:
        return None
    r, k_r, factor = plan
    en, l2 = clamped(en, clamp), clamped(l2, clamp)
    rng = np.random.default_rng(seed)
    subsets = np.argsort(rng.random((n_sub, n)), axis=1)[:, :r]
    member = torch.zeros(n_sub, n, dtype=torch.bool).scatter_(1, torch.from_numpy(subsets), True)
    out = np.zeros((n_sub, en.shape[0]))
    width = _window(k_r, n - 1)
    for layer in range(en.shape[0]):
        near = (_nearest(en[layer], width), _nearest(l2[layer], width))
        for start in range(0, n_sub, RESAMPLES_AT_ONCE):
            chunk = member[start : start + RESAMPLES_AT_ONCE]
            values, short = _subset_mknn(chunk, *near, k_r)
            for b in short.nonzero().flatten().tolist():  # a member's window held too few members
                rows = torch.from_numpy(subsets[start + b])
                values[b] = mutual_knn(en[layer][rows], l2[layer][rows], k_r)
            out[start : start + len(chunk), layer] = values.numpy()
    return out, factor


def subsample_variance(values: np.ndarray, factor: float) -> np.ndarray:
    """The variance of the full-sample statistic from its values on the subsets ([n_sub, ...])."""
    return np.var(values, axis=0, ddof=1) / factor


def mknn_swaps(
    en: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    k: int,
    n_swaps: int,
    seed: int,
    clamp: float | None = None,
) -> np.ndarray:
    """The randomization distribution [n_swaps] of mean mutual kNN over layers of `first` minus that
    of `second` ([L, n, dim] L2 states of the same pairs under two conditions, `en` the English
    side): each swap exchanges the two conditions' states of a random half of the pairs, the same
    pairs on every layer, and recomputes mutual kNN on both sides. Exact under the null that the two
    conditions are exchangeable per pair (Lehmann and Romano 2005, ch. 15); its spread is the
    unit-sampling spread of the observed difference."""
    en, first, second = clamped(en, clamp), clamped(first, clamp), clamped(second, clamp)
    n = en.shape[1]
    swapped = torch.from_numpy(np.random.default_rng(seed).random((n_swaps, n)) < 0.5)
    total = np.zeros(n_swaps)
    for layer in range(en.shape[0]):
        english = _nearest(en[layer], k)
        tables = _swap_candidates(first[layer], second[layer], english)
        for start in range(0, n_swaps, RESAMPLES_AT_ONCE):
            w = swapped[start : start + RESAMPLES_AT_ONCE]
            values = _swapped_mknn(w, tables, k) - _swapped_mknn(~w, tables, k)
            total[start : start + len(w)] += values.numpy()
    return total / en.shape[0]


SwapTables = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # per own condition: [2, n, width] each


def _swap_candidates(first: torch.Tensor, second: torch.Tensor, english: torch.Tensor) -> SwapTables:
    """For each row under each of the two conditions: every other pair's state under either condition,
    nearest first ([2, n, 2n - 2]: which pair, which condition, and whether that pair is among the
    row's English neighbours `english` [n, k])."""
    n = first.shape[0]
    states = torch.stack([F.normalize(first.double(), dim=-1), F.normalize(second.double(), dim=-1)])
    sims = torch.einsum("aid,cjd->aicj", states, states).reshape(2, n, 2 * n)  # own condition, row, (cond, pair)
    own = torch.arange(n)
    sims[:, own, own] = float("-inf")
    sims[:, own, own + n] = float("-inf")
    order = sims.topk(2 * n - 2, dim=-1).indices
    pair, condition = order % n, order // n
    in_english = torch.zeros(n, n, dtype=torch.bool).scatter_(1, english, True)
    return pair, condition, in_english[own[:, None], pair]


def _swapped_mknn(side: torch.Tensor, tables: SwapTables, k: int) -> torch.Tensor:
    """Mutual kNN [B] with English of the set whose pair j holds its second condition's state where
    `side` [B, n] is True, its first's elsewhere; from the candidates of `_swap_candidates`."""
    pair, condition, in_english = tables
    batch, n = side.shape
    own = side.long()[:, :, None]  # each row's own condition picks its candidate table
    width = min(pair.shape[-1], 2 * _window(k, pair.shape[-1]))  # each pair twice, one state valid
    rows = []
    for limit in (width, pair.shape[-1]):
        p, c, e = (t[:, :, :limit] for t in (pair, condition, in_english))
        pick = [torch.where(own.bool(), t[1], t[0]) for t in (p, c, e)]  # [B, n, limit]
        valid = pick[1] == side.long().gather(1, pick[0].reshape(batch, -1)).reshape(batch, n, limit)
        chosen, short = _first(valid, k)
        rows.append(((chosen & pick[2]).sum(-1).double().mean(-1) / k, short.any(-1)))
        if not rows[0][1].any():
            break
    if len(rows) == 1:
        return rows[0][0]
    return torch.where(rows[0][1], rows[1][0], rows[0][0])
