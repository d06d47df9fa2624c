"""Multiple-choice scoring (docs/method.md section 7): the chosen option is the letter with the highest
log-likelihood ('letter' scoring), or the option whose letter log-likelihood, averaged over the
cyclic permutations of the option order, is highest ('cyclic' scoring: a fixed preference for a
letter adds the same amount to every option and cancels). Plus the honesty checks of an accuracy:
which letters were chosen, and whether the chance level lies within its 95 % Wilson interval."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


def choose(logprobs: Iterable[torch.Tensor], n_options: Sequence[int]) -> list[int]:
    """Index of the most likely option per question: argmax over the first n_options[q] letters
    (or option scores), one row per question."""
    return [int(row[:n].argmax()) for row, n in zip(logprobs, n_options, strict=True)]


def cyclic_scores(shifted: torch.Tensor) -> torch.Tensor:
    """Per-option scores [n] of one question from its letter log-probabilities [n shifts, n letters]
    under every cyclic shift of the option order: under shift s, letter position k shows option
    (k + s) mod n (`data.mc.shifted_item`), so option o sits at position (o - s) mod n. Its score is
    the mean over s of shifted[s, (o - s) mod n]: every option is scored once at every letter, and a
    fixed per-letter bias adds the same mean to every option."""
    n = shifted.shape[0]
    return torch.stack([torch.roll(shifted[s, :n], s) for s in range(n)]).mean(0)


def letter_counts(chosen: Sequence[str], letters: Sequence[str]) -> dict[str, int]:
    """How often each of `letters` was chosen (zero counts kept, in `letters` order)."""
    counts = Counter(chosen)
    return {letter: counts.get(letter, 0) for letter in letters}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default); (0, 1) for n = 0. Chosen
    over the normal approximation because it stays inside [0, 1] and holds up for small n and
    proportions near 0 or 1; it equals scipy's binomtest(...).proportion_ci(method='wilson')."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def near_chance(successes: int, n: int, chance: float) -> bool:
    """Whether an accuracy of successes / n is within noise of `chance`: the chance level lies inside
    its 95 % Wilson interval."""
    low, high = wilson_interval(successes, n)
    return low <= chance <= high
