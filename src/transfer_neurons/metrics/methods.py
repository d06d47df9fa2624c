"""Language-specific-neuron scores of other methods (docs/method.md section 3): plain functions over tensors.

- LAPE (Tang et al., ACL 2024): from each language's activation probability ``p_{l,i}`` (the share
  of token positions where the activation function's output is > 0), the entropy of ``p_{.,i}``
  normalised over the languages; low entropy = language-specific.
- AP (Kojima et al., NAACL 2024): each neuron's per-sentence value as a classifier score for
  "this sentence is in L"; the neuron's score is the average precision, exactly as scikit-learn's
  ``average_precision_score`` computes it (tied scores form one threshold).
"""

from __future__ import annotations

import torch

FILTER_RATE = 0.95  # LAPE: a neuron counts for language l when p_{l,i} exceeds this quantile of all p


def activation_probabilities(counts: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
    """``p_{l,i}`` [..., G] from positive counts [G, ...] and token totals [G] of G languages."""
    shape = (-1,) + (1,) * (counts.dim() - 1)
    return (counts.double() / totals.double().reshape(shape)).movedim(0, -1)


def lape_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``p`` [..., G] normalised over its last axis; 0 for a neuron never active."""
    normed = p / p.sum(-1, keepdim=True)
    normed = torch.nan_to_num(normed, nan=0.0)
    logs = torch.where(normed > 0, normed.log(), torch.zeros_like(normed))
    return -(normed * logs).sum(-1)


def lape_threshold(p: torch.Tensor, filter_rate: float = FILTER_RATE) -> float:
    """The authors' activation bar: the round(filter_rate * N)-th smallest of all N probabilities."""
    flat = p.reshape(-1)
    k = min(max(round(flat.numel() * filter_rate), 1), flat.numel())
    return float(flat.kthvalue(k).values)


def lape_scores(p: torch.Tensor, target: int, filter_rate: float = FILTER_RATE) -> torch.Tensor:
    """LAPE score of every neuron for language `target` (an index of p's last axis), [...]:
    ``-H_i`` where ``p_{target,i}`` exceeds `lape_threshold`, NaN elsewhere (never ranked)."""
    entropy = lape_entropy(p)
    chosen = p[..., target] > lape_threshold(p, filter_rate)
    return torch.where(chosen, -entropy, torch.full_like(entropy, float("nan")))


def average_precision(scores: torch.Tensor, labels: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Average precision of every column of `scores` [n, N] as a ranking of the positives of
    `labels` [n] (bool), [N] float64; equals scikit-learn's ``average_precision_score`` per column.

    AP = sum over the distinct score thresholds t, highest first, of (R_t - R_prev) * P_t: tied
    scores enter together. Columns are processed in chunks, so memory is O(n * chunk)."""
    positives = labels.bool()
    total = int(positives.sum())
    if total == 0 or total == len(positives):
        raise ValueError("average precision needs positive and negative examples")
    n = scores.shape[0]
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device)[:, None]
    out = []
    for start in range(0, scores.shape[1], chunk):
        block = scores[:, start : start + chunk]
        ordered, order = block.sort(dim=0, descending=True, stable=True)
        hits = positives.to(block.device)[order].double().cumsum(0)  # true positives down to each row
        last = torch.ones_like(ordered, dtype=torch.bool)  # the last row of each group of tied scores
        last[:-1] = ordered[:-1] != ordered[1:]
        zero = torch.zeros_like(hits)
        at_ends = torch.where(last, hits, zero)
        before = torch.cat([zero[:1], at_ends.cummax(0).values[:-1]])  # hits at the previous group's end
        recall_steps = torch.where(last, hits - before, zero) / total
        out.append((recall_steps * hits / ranks).sum(0))
    return torch.cat(out)
