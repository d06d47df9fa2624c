"""What a neuron page computes (docs/method.md section 11): plain functions over tensors, no model code.

- Vocabulary projection (Geva et al. 2022): the logits a value vector ``u`` adds through the final
  norm's gain and the unembedding, ``W_U (g_final * u)``; the tokens it promotes and suppresses most.
- Massive dimensions: the few hidden dimensions that hold most of the squared norm of a layer's
  mean state, and the share of a value vector's squared norm that lies in them.
- A box plot's numbers and the rows where a neuron fires most and least.

(What deactivating one neuron alone does to a state's cosine to a centroid, ``cos(h - a_i u_i, c) -
cos(h, c)``, is the detection score's closed form with ``-a_i``: `metrics.scoring.LayerScorer`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MASSIVE_SHARE = 0.5  # massive dimensions hold at least this share of the mean state's squared norm
MASSIVE_MOST = 5  # ... and are at most this many


def scaled_values(u: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
    """``g_final * u`` [n, d] in float32 (`u` itself without a gain)."""
    u = u.float()
    return u if gain is None else u * gain.to(u.device, torch.float32)


def vocab_projection(w_u: torch.Tensor, gain: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
    """The logits ``W_U (g_final * u_i)`` [n, V] of value vectors `u` [n, d], float32; `w_u` [V, d]."""
    return scaled_values(u, gain) @ w_u.float().T


@dataclass(frozen=True)
class TokenRanking:
    """Per value vector, the k tokens with the highest logits (descending) and the k with the lowest
    (ascending, the most suppressed first): ids and logits, each [n, k]."""

    promoted_ids: torch.Tensor
    promoted: torch.Tensor
    suppressed_ids: torch.Tensor
    suppressed: torch.Tensor


def top_tokens(
    w_u: torch.Tensor, gain: torch.Tensor | None, u: torch.Tensor, k: int, rows: int = 32768
) -> TokenRanking:
    """The `k` most promoted and most suppressed tokens of each value vector in `u` [n, d], over the
    unembedding `w_u` [V, d] taken `rows` tokens at a time (memory O(n * rows) whatever V's dtype and
    size); computed on `w_u`'s device, returned on the CPU. Equal logits are listed by token id."""
    x = scaled_values(u, gain).to(w_u.device)
    k = min(k, w_u.shape[0])
    empty = (torch.empty(len(x), 0, device=w_u.device), torch.empty(len(x), 0, dtype=torch.long, device=w_u.device))
    high, low = empty, empty
    for start in range(0, w_u.shape[0], rows):
        logits = x @ w_u[start : start + rows].float().T
        high = _best(high, logits, start, k, largest=True)
        low = _best(low, logits, start, k, largest=False)
    return TokenRanking(high[1].cpu(), high[0].cpu(), low[1].cpu(), low[0].cpu())


def _best(
    kept: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor, start: int, k: int, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the kept (logit, id) pairs and a chunk of logits of the tokens from `start` on,
    ordered by logit, equal logits by id."""
    top = logits.topk(min(k, logits.shape[1]), dim=1, largest=largest)
    values, ids = torch.cat([kept[0], top.values], 1), torch.cat([kept[1], top.indices + start], 1)
    by_id = ids.argsort(dim=1, stable=True)
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    best = values.argsort(dim=1, descending=largest, stable=True)[:, :k]
    return values.gather(1, best), ids.gather(1, best)


def massive_dimensions(mean_state: torch.Tensor, share: float = MASSIVE_SHARE, most: int = MASSIVE_MOST) -> list[int]:
    """The smallest set of dimensions of `mean_state` [d] that holds at least `share` of its squared
    norm, largest first; empty when `most` dimensions do not suffice (the layer has no massive ones)."""
    squares = mean_state.double().pow(2)
    total = float(squares.sum())
    if total <= 0:
        return []
    order = torch.argsort(squares, descending=True, stable=True)
    held = torch.cumsum(squares[order], 0) / total
    count = int((held < share - 1e-12).sum()) + 1
    return order[:count].tolist() if count <= most else []


def dimension_share(u: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """The share of each row's squared norm in the dimensions `dims`: [n] float64 (0 for a zero row)."""
    squares = u.double().pow(2)
    total = squares.sum(-1)
    inside = squares[:, list(dims)].sum(-1)
    return torch.where(total > 0, inside / total.clamp(min=1e-300), torch.zeros_like(total))


def extremes(values: Sequence[float] | np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """The indices of the k highest `values` (descending) and of the k lowest (ascending); ties
    keep the input order."""
    values = np.asarray(values, dtype=np.float64)
    top = np.argsort(-values, kind="stable")[:k]
    bottom = np.argsort(values, kind="stable")[:k]
    return top.tolist(), bottom.tolist()


def box_stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """A box plot's numbers (Tukey): quartiles, and whiskers at the most extreme values within 1.5
    interquartile ranges of the box; with the count, mean and standard deviation (ddof 1; 0 for one value)."""
    x = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    inside = x[(x >= q1 - reach) & (x <= q3 + reach)]
    return {
        "n": int(len(x)),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "low": float(inside.min()),
        "high": float(inside.max()),
    }
