"""A time estimate before a long run of batches: the first batch is timed and scaled up, so a user
learns early whether `qa`, `mc` or `output-lang` takes minutes or hours on this machine."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")

Say = Callable[[str], None]


def duration(seconds: float) -> str:
    """'40 s', '3.5 min' or '2.1 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def with_estimate(
    step: Callable[[Sequence[Item]], Out],
    items: Sequence[Item],
    batch_size: int,
    n_conditions: int,
    say: Say | None,
    what: str = "prompts",
) -> list[Out]:
    """The outputs of step(items) in parts, to be joined in order: with `say`, the first batch runs
    and is timed alone (batches are independent, so the parts join to the output of one call), then
    `say` gets one line: the first batch's time times the number of batches of every condition.
    Without `say`, one part from one plain call."""
    if say is None or len(items) <= batch_size:
        return [step(items)]
    start = time.perf_counter()
    head = step(items[:batch_size])
    seconds = time.perf_counter() - start
    batches = math.ceil(len(items) / batch_size) * n_conditions
    say(
        f"about {len(items)} {what} x {n_conditions} condition{'s' * (n_conditions > 1)}; estimated "
        f"{duration(seconds * batches)} on this machine (from the first batch of {min(batch_size, len(items))}: "
        f"{seconds:.1f} s)"
    )
    return [head, step(items[batch_size:])]
