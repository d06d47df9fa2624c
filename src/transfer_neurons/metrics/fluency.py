"""Fluency of a continuation (docs/method.md section 7, "Steering"): the share of repeated token
n-grams in it (its log-likelihood under the unsteered model: `hooks.generation.continuation_logliks`)."""

from __future__ import annotations

from collections.abc import Sequence

NGRAM = 3  # the n of the repeated n-gram rate


def repeated_ngram_rate(ids: Sequence[int], n: int = NGRAM) -> float:
    """The share of the sequence's n-grams that occurred earlier in it (0 with fewer than n + 1 tokens)."""
    grams = [tuple(ids[k : k + n]) for k in range(len(ids) - n + 1)]
    return 0.0 if not grams else 1 - len(set(grams)) / len(grams)
