"""Where an intervention acts: which sequence positions each forward pass of a hooked layer covers,
read from the tensors (never from a library's keyword arguments), and the slice of a pass that a
position policy scales (docs/method.md section 4)."""

from __future__ import annotations

from transfer_neurons.choices import Positions
from transfer_neurons.errors import InputError


class PositionError(InputError):
    """The hooks could not tell prompt positions from generated ones, or a generation made other
    forward passes than expected: the position policy would not mean what its name says."""


class PositionTracker:
    """Which sequence positions each forward pass of a hooked layer covers, read from the tensors.

    Plain forwards (``prompt_length=None``): every pass is a whole prompt, positions 0..T-1. A
    generation started with a (left-padded) prompt of P positions: the first pass of a layer must
    cover exactly the P prompt positions; each later pass is one cached decoding step (one new
    position) or, without a cache, the whole sequence again (P + j positions). Anything else, and
    a cached-looking one-position pass after a longer one in plain mode under a policy that spares
    generated tokens, is a PositionError: the policy cannot be applied without guessing.
    """

    def __init__(self, policy: str, prompt_length: int | None = None) -> None:
        if prompt_length is not None and prompt_length < 1:
            raise ValueError("a generation needs a prompt of at least one position")
        self.policy = policy
        self.prompt_length = prompt_length
        self.seen: dict[int, int] = {}  # layer -> positions of the sequence processed so far
        self.calls: dict[int, list[tuple[int, int]]] = {}  # layer -> (first position, width) per pass

    def span(self, layer: int, width: int) -> tuple[int, int]:
        """(first position, prompt length) of a pass of `width` positions through `layer`."""
        calls = self.calls.setdefault(layer, [])
        if self.prompt_length is None:
            if width == 1 and calls and max(w for _, w in calls) > 1 and self.policy != Positions.all:
                raise PositionError(
                    f"the '{self.policy}' position policy saw a one-position forward after a longer one "
                    "(cached decoding?); generate with transfer_neurons.generate, or give apply_intervention "
                    "the prompt_length, so that prompt and generated positions can be told apart"
                )
            calls.append((0, width))
            return 0, width
        prompt, seen = self.prompt_length, self.seen.get(layer, 0)
        if seen == 0 and width == prompt:
            start = 0
        elif seen >= prompt and width == 1:
            start = seen  # one cached decoding step
        elif seen >= prompt and width == seen + 1:
            start = 0  # the whole sequence again, without a cache
        else:
            raise PositionError(
                f"a forward pass of layer {layer} covered {width} positions after {seen} of a generation whose "
                f"prompt has {prompt}; the '{self.policy}' position policy cannot tell prompt from generated "
                "positions in it (chunked prefill or speculative decoding are not supported)"
            )
        self.seen[layer] = start + width
        calls.append((start, width))
        return start, prompt

    def check_generation(self, new_tokens: int) -> None:
        """After a generation of `new_tokens` tokens: every hooked layer saw one pass for the prompt
        and one per further token (N - 1 decoding steps), each covering the expected positions."""
        for layer, calls in sorted(self.calls.items()):
            if len(calls) != new_tokens:
                raise PositionError(
                    f"the intervention saw {len(calls)} forward passes of layer {layer} while {new_tokens} tokens "
                    f"were generated (expected {new_tokens}: the prompt, then one per further token); the "
                    f"'{self.policy}' position policy may not have been applied as named, so nothing is reported"
                )


def scaled_slice(policy: str, start: int, width: int, prompt: int) -> tuple[int, int]:
    """The slice [first, end) of a pass over positions start..start+width-1 that `policy` scales."""
    if policy == Positions.all:
        return 0, width
    first, end = (0, prompt) if policy == Positions.prompt else (prompt - 1, prompt)
    return max(first - start, 0), min(end - start, width)
