"""Interventions: scale chosen MLP neurons' activations during forward passes and generation.

An intervention is plain data: (layer, neuron, factor) triples (0 deactivates, > 1 amplifies,
any float is allowed) and a position policy:

- ``last``: only the last prompt token (representation analyses);
- ``prompt``: every prompt position, prefill only; generated tokens are untouched (QA, MC);
- ``all``: every position, generated tokens included.

`apply_intervention` multiplies the activation ``a`` (the input of the down projection) through
forward pre-hooks and removes them on exit, so the model afterwards behaves exactly as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transfer_neurons.artifacts.io import read_json, write_json
from transfer_neurons.artifacts.names import SCHEMA_VERSION
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import LoadedModel

POSITIONS = tuple(p.value for p in Positions)
BASELINE_MODES = tuple(b.value for b in Baseline)


@dataclass(frozen=True)
class Intervention:
    """Neurons to scale, as sorted (layer, neuron, factor) triples, and where to scale them."""

    neurons: tuple[tuple[int, int, float], ...]
    positions: str = "last"

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", str(getattr(self.positions, "value", self.positions)))
        if self.positions not in POSITIONS:
            raise InputError(f"unknown position policy '{self.positions}'; use one of {', '.join(POSITIONS)}")
        keys = [(layer, neuron) for layer, neuron, _ in self.neurons]
        if len(set(keys)) != len(keys):
            raise InputError("an intervention lists the same (layer, neuron) twice; give each neuron once")

    @classmethod
    def of(
        cls, neurons: Iterable[tuple[int, int] | tuple[int, int, float]], factor: float = 0.0, positions: str = "last"
    ) -> Intervention:
        """Scale every (layer, neuron) in `neurons` by the same `factor`; (layer, neuron, score)
        triples such as `Detection.top` are accepted too (the score is ignored)."""
        return cls(tuple(sorted((int(n[0]), int(n[1]), float(factor)) for n in neurons)), positions)

    @classmethod
    def from_neurons(
        cls, neurons: NeuronSet, top_k: int, factor: float = 0.0, positions: str = Positions.last
    ) -> Intervention:
        """The top-k neurons of a neuron set (see `artifacts.neurons.read_neurons`)."""
        neurons.check_top_k(top_k)
        return cls.of(neurons.neurons(top_k), factor, positions)

    @classmethod
    def from_neurons_json(
        cls, path: str | Path, top_k: int, factor: float = 0.0, positions: str = Positions.last
    ) -> Intervention:
        """The top-k neurons of a `neurons.json` written by `detect`."""
        return cls.from_neurons(read_neurons(path), top_k, factor, positions)

    @classmethod
    def load(cls, path: str | Path) -> Intervention:
        data = read_json(path)
        return cls(tuple((int(l), int(i), float(f)) for l, i, f in data["neurons"]), data["positions"])

    def save(self, path: str | Path) -> None:
        write_json(
            path,
            {"schema_version": SCHEMA_VERSION, "positions": self.positions, "neurons": [list(n) for n in self.neurons]},
        )

    def pairs(self) -> list[tuple[int, int]]:
        return [(layer, neuron) for layer, neuron, _ in self.neurons]

    def counts_per_layer(self) -> dict[int, int]:
        return dict(sorted(Counter(layer for layer, _, _ in self.neurons).items()))

    def factors(self, layer: int, width: int) -> torch.Tensor:
        """The multiplicative vector of `layer` [width]: 1 everywhere but at this layer's neurons."""
        vector = torch.ones(width)
        for l, neuron, factor in self.neurons:
            if l == layer:
                vector[neuron] = factor
        return vector

    def check(self, num_layers: int, width: int) -> None:
        """Raise InputError if a neuron lies outside a model with `num_layers` x `width` neurons."""
        for layer, neuron, _ in self.neurons:
            if not (0 <= layer < num_layers and 0 <= neuron < width):
                raise InputError(
                    f"neuron ({layer}, {neuron}) lies outside the model's {num_layers} layers x {width} neurons"
                )

    def export_steering(self, path: str | Path, width: int) -> None:
        """Write a steering file for lm-evaluation-harness's `steered` model.

        One entry per layer, hookpoint ``layers.{l}.mlp.act_fn``, with ``action: "multiply"`` and a
        [1, width] ``steering_vector`` of factors (the format of the Transfer Neurons authors'
        harness fork). The harness applies it at every position, like the ``all`` policy.
        """
        config = {
            f"layers.{layer}.mlp.act_fn": {
                "steering_vector": self.factors(layer, width)[None, :],
                "steering_coefficient": 1.0,
                "action": "multiply",
                "bias": None,
            }
            for layer in self.counts_per_layer()
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(config, path)


@contextmanager
def apply_intervention(lm: LoadedModel, intervention: Intervention | None) -> Iterator[None]:
    """Scale the intervention's neurons inside the block (no-op for None); hooks are removed on exit."""
    if intervention is None or not intervention.neurons:
        yield
        return
    intervention.check(lm.num_layers, lm.mlp_width)
    state = {"decoding": False}

    def on_decoder(_module, _args, kwargs):
        cache = kwargs.get("past_key_values")
        state["decoding"] = cache is not None and cache.get_seq_length() > 0

    handles = [lm.model.get_decoder().register_forward_pre_hook(on_decoder, with_kwargs=True)]
    for layer in intervention.counts_per_layer():
        down = lm.adapter.down_module(lm.model, layer)
        weight = down.weight
        assert isinstance(weight, torch.Tensor)
        factors = intervention.factors(layer, lm.mlp_width).to(weight.device, weight.dtype)

        def scale(_module, args, factors=factors):
            if state["decoding"] and intervention.positions != "all":
                return None
            a = args[0]
            if intervention.positions == "last" and not state["decoding"]:
                a = torch.cat([a[:, :-1], a[:, -1:] * factors], dim=1)
            else:
                a = a * factors
            return (a, *args[1:])

        handles.append(down.register_forward_pre_hook(scale))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def random_baseline(
    controlled: Intervention,
    width: int,
    mode: str = "per-layer",
    layers: list[int] | None = None,
    seed: int = 0,
) -> Intervention:
    """Random neurons to compare with `controlled`, never containing its neurons; same factor and policy.

    per-layer: the same number of neurons in each layer as `controlled`; uniform: the same total
    drawn uniformly over `layers` (the candidate layers; the paper's choice).
    """
    mode = str(getattr(mode, "value", mode))
    if mode not in BASELINE_MODES:
        raise InputError(f"unknown baseline mode '{mode}'; use one of {', '.join(BASELINE_MODES)}")
    rng = np.random.default_rng(seed)
    taken = set(controlled.pairs())
    factor = controlled.neurons[0][2] if controlled.neurons else 0.0
    if mode == "per-layer":
        chosen: list[tuple[int, int]] = []
        for layer, count in controlled.counts_per_layer().items():
            indices = [i for i in range(width) if (layer, i) not in taken]
            chosen += [(layer, int(i)) for i in rng.choice(indices, size=count, replace=False)]
    else:
        if not layers:
            raise InputError("a uniform baseline needs the candidate layers")
        free = [(l, i) for l in layers for i in range(width) if (l, i) not in taken]
        if len(free) < len(taken):
            raise InputError("too few neurons outside the controlled set for a uniform baseline")
        chosen = [free[k] for k in rng.choice(len(free), size=len(taken), replace=False)]
    return Intervention.of(chosen, factor, controlled.positions)


Conditions = dict[str, "Intervention | None"]


def deactivation_conditions(
    neurons: NeuronSet,
    top_k: int,
    num_layers: int,
    width: int,
    positions: str = Positions.last,
    baseline: str = Baseline.per_layer,
    seed: int = 0,
) -> Conditions:
    """The three conditions of a controlled experiment: normal (None), the top-k neurons of a
    neuron set deactivated, and a seeded random baseline of the same shape."""
    neurons.check_model(num_layers, width)
    deactivated = Intervention.from_neurons(neurons, top_k, factor=0.0, positions=positions)
    candidates = list(neurons.layers) or sorted(deactivated.counts_per_layer())
    random = random_baseline(deactivated, width, baseline, candidates, seed)
    return {"normal": None, "deactivated": deactivated, "random": random}
