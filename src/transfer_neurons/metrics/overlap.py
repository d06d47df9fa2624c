"""Layer distribution and overlap of neuron sets (docs/method.md section 6): plain functions, no model code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Neuron = tuple[int, int]


def jaccard(a: Iterable[Neuron], b: Iterable[Neuron]) -> float:
    """|A & B| / |A | B| of two neuron sets (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def jaccard_matrix(sets: Sequence[Iterable[Neuron]]) -> np.ndarray:
    """Symmetric [n, n] matrix of pairwise Jaccard indices (ones on the diagonal)."""
    sets = [set(s) for s in sets]
    return np.array([[jaccard(a, b) for b in sets] for a in sets])


def chance_jaccard(n_a: int, n_b: int, population: int) -> float:
    """Expected-overlap Jaccard of two independent uniform random sets of sizes n_a, n_b drawn from
    `population` neurons: E|A & B| = n_a n_b / N, used in |A & B| / (n_a + n_b - |A & B|)."""
    inter = n_a * n_b / population
    return inter / (n_a + n_b - inter)


def chance_jaccard_over_layers(
    n_a: int, n_b: int, layers_a: Iterable[int], layers_b: Iterable[int], width: int
) -> float:
    """Chance Jaccard of two independent uniform random sets of sizes n_a, n_b, each drawn over its
    OWN candidate layers L_a, L_b of `width` neurons. A neuron of a shared layer is in A with
    probability n_a / (width |L_a|) and in B with n_b / (width |L_b|); only shared layers can hold
    common neurons, so

        E|A & B| = n_a n_b |L_a & L_b| / (width |L_a| |L_b|),

    used in E|A & B| / (n_a + n_b - E|A & B|). Disjoint layers give 0; identical layers give
    `chance_jaccard(n_a, n_b, width |L|)`."""
    la, lb = set(layers_a), set(layers_b)
    inter = n_a * n_b * len(la & lb) / (width * len(la) * len(lb))
    return inter / (n_a + n_b - inter)


def layer_counts(neurons: Iterable[Neuron], num_layers: int) -> list[int]:
    """How many of `neurons` sit in each layer 0..num_layers-1."""
    counts = [0] * num_layers
    for layer, _ in neurons:
        counts[layer] += 1
    return counts
