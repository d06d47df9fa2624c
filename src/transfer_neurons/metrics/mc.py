"""Multiple-choice scoring (DESIGN.md 3.6): the chosen option is the letter with the highest log-likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def choose(logprobs: torch.Tensor, n_options: Sequence[int]) -> list[int]:
    """Index of the most likely option per question: argmax over the first n_options[q] letters."""
    return [int(row[:n].argmax()) for row, n in zip(logprobs, n_options, strict=True)]
