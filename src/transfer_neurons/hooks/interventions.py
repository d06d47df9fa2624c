"""Interventions: scale, set or shift chosen MLP neurons' activations during forward passes and generation.

An intervention is plain data: (layer, neuron, factor) triples (0 deactivates, > 1 amplifies,
any float is allowed), (layer, neuron, value) shifts added after the factor (docs/method.md
section 4: `a' = factor * a + shift`; `set` is factor 0 plus a shift, `add` a shift alone), and a
position policy:

- ``last``: only the last prompt token (representation analyses);
- ``prompt``: every prompt position, prefill only; generated tokens are untouched (QA, MC);
- ``all``: every position, generated tokens included.

`apply_intervention` maps the activation ``a`` (the input of the down projection) through forward
pre-hooks and removes them on exit, so the model afterwards behaves exactly as before.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from transfer_neurons.artifacts.io import read_json, write_json
from transfer_neurons.artifacts.names import SCHEMA_VERSION
from transfer_neurons.artifacts.neurons import ModelIdentity, NeuronSet, read_neurons
from transfer_neurons.choices import Baseline, Positions
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.positions import PositionTracker, scaled_slice
from transfer_neurons.model.loading import LoadedModel

POSITIONS = tuple(p.value for p in Positions)
Unit = TypeVar("Unit")
BASELINE_MODES = tuple(b.value for b in Baseline)


@dataclass(frozen=True)
class Intervention:
    """Neurons to scale, as sorted (layer, neuron, factor) triples, values added to neurons after
    their factor, as sorted (layer, neuron, shift) triples, and where to apply both."""

    neurons: tuple[tuple[int, int, float], ...]
    positions: str = "last"
    model: ModelIdentity | None = field(default=None, compare=False)  # recorded in the saved file
    shifts: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", str(getattr(self.positions, "value", self.positions)))
        if self.positions not in POSITIONS:
            raise InputError(f"unknown position policy '{self.positions}'; use one of {', '.join(POSITIONS)}")
        for listed in (self.neurons, self.shifts):
            keys = [(layer, neuron) for layer, neuron, _ in listed]
            if len(set(keys)) != len(keys):
                raise InputError("an intervention lists the same (layer, neuron) twice; give each neuron once")
        if not all(math.isfinite(value) for *_, value in (*self.neurons, *self.shifts)):
            raise InputError("an intervention's factors and shifts must be finite numbers")

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
        neurons = tuple((int(l), int(i), float(f)) for l, i, f in data["neurons"])
        shifts = tuple((int(l), int(i), float(v)) for l, i, v in data.get("shifts", []))
        model = ModelIdentity.from_json(data.get("model_identity"), str(path))
        return cls(neurons, data["positions"], model, shifts)

    def save(self, path: str | Path) -> None:
        shifts = {"shifts": [list(n) for n in self.shifts]} if self.shifts else {}
        _save(path, self.positions, self.model, {"neurons": [list(n) for n in self.neurons], **shifts})

    def pairs(self) -> list[tuple[int, int]]:
        return [(layer, neuron) for layer, neuron, _ in self.neurons]

    def counts_per_layer(self) -> dict[int, int]:
        return dict(sorted(Counter(layer for layer, _, _ in self.neurons).items()))

    def layers(self) -> list[int]:
        """The layers the intervention touches (scaled or shifted neurons)."""
        return sorted({layer for layer, _, _ in (*self.neurons, *self.shifts)})

    def factors(self, layer: int, width: int) -> torch.Tensor:
        """The multiplicative vector of `layer` [width]: 1 everywhere but at this layer's neurons."""
        return _vector(self.neurons, layer, width, 1.0)

    def offsets(self, layer: int, width: int) -> torch.Tensor:
        """The additive vector of `layer` [width]: 0 everywhere but at this layer's shifted neurons."""
        return _vector(self.shifts, layer, width, 0.0)

    def check(self, num_layers: int, width: int) -> None:
        """Raise InputError if a neuron lies outside a model with `num_layers` x `width` neurons."""
        for layer, neuron, _ in (*self.neurons, *self.shifts):
            if not (0 <= layer < num_layers and 0 <= neuron < width):
                raise InputError(
                    f"neuron ({layer}, {neuron}) lies outside the model's {num_layers} layers x {width} neurons"
                )

    def export_steering(self, path: str | Path, width: int) -> None:
        """Write a steering file for lm-evaluation-harness's `steered` model.

        One entry per layer, hookpoint ``layers.{l}.mlp.act_fn``, with ``action: "multiply"`` and a
        [1, width] ``steering_vector`` of factors (the format of the Transfer Neurons authors'
        harness fork). The harness applies it at every position, like the ``all`` policy. Shifts
        cannot be written: the format multiplies the activation function's output, and lm-eval's
        `add` action adds to a module's output, neither of which is a value added to ``a``.
        """
        if self.shifts:
            raise InputError(
                "lm-eval's steering format cannot carry 'set' or 'add' (values added to the down projection's "
                "input); only 'scale' interventions can be exported"
            )
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


def _save(path: str | Path, positions: str, model: ModelIdentity | None, neurons: dict[str, Any]) -> None:
    """Write an intervention file: the schema, the positions and the model, then its `neurons`."""
    identity = None if model is None else model.to_json()
    write_json(path, {"schema_version": SCHEMA_VERSION, "positions": positions, "model_identity": identity, **neurons})


def _vector(entries: Sequence[tuple[int, int, float]], layer: int, width: int, fill: float) -> torch.Tensor:
    """[width] filled with `fill`, with each (layer, neuron, value) of `layer` at its neuron."""
    vector = torch.full((width,), fill)
    for l, neuron, value in entries:
        if l == layer:
            vector[neuron] = value
    return vector


Applied = Intervention | Sequence[Intervention | None] | None  # one for all rows, or one per row


def rows_of(intervention: Applied, index: Iterable[int]) -> Applied:
    """The part of `intervention` for the batch rows `index` (units in input order)."""
    if intervention is None or isinstance(intervention, Intervention):
        return intervention
    return [intervention[k] for k in index]


@contextmanager
def apply_intervention(
    lm: LoadedModel, intervention: Applied, prompt_length: int | None = None
) -> Iterator[PositionTracker | None]:
    """Scale the intervention's neurons inside the block (no-op for None); hooks are removed on exit.

    A sequence gives one intervention per row of the batch (None: that row untouched), all with
    the same position policy: a multi-seed random baseline runs its draws in one pass this way.
    Without `prompt_length` every forward is a whole prompt; a generation passes the padded
    prompt length, so that the hooks tell prompt from generated positions by the positions they
    see (never by the library's keyword arguments), and yields the PositionTracker to check after.
    """
    rows: list[Intervention | None] | None
    if intervention is None or isinstance(intervention, Intervention):
        rows, listed = None, [intervention]
    else:
        rows = listed = list(intervention)
    chosen = [iv for iv in listed if iv is not None and (iv.neurons or iv.shifts)]
    if not chosen:
        yield None
        return
    positions = {iv.positions for iv in chosen}
    if len(positions) > 1:
        raise ValueError(f"per-row interventions need one position policy, got {sorted(positions)}")
    policy = positions.pop()
    for iv in chosen:
        iv.check(lm.num_layers, lm.mlp_width)
    tracker = PositionTracker(policy, prompt_length)
    handles = []
    layers = sorted({layer for iv in chosen for layer in iv.layers()})
    shifted = any(iv.shifts for iv in chosen)
    for layer in layers:
        down = lm.adapter.down_module(lm.model, layer)
        weight = down.weight
        assert isinstance(weight, torch.Tensor)
        if rows is None:
            pair = chosen[0].factors(layer, lm.mlp_width), chosen[0].offsets(layer, lm.mlp_width)
        else:
            none = Intervention(())
            parts = [(none if iv is None else iv) for iv in rows]
            pair = (
                torch.stack([iv.factors(layer, lm.mlp_width) for iv in parts])[:, None],
                torch.stack([iv.offsets(layer, lm.mlp_width) for iv in parts])[:, None],
            )
        factors, offsets = (v.to(weight.device, weight.dtype) for v in pair)  # [width], or [rows, 1, width]

        def mapped(a: torch.Tensor, factors=factors, offsets=offsets) -> torch.Tensor:
            return a * factors + offsets if shifted else a * factors

        def scale(_module, args, factors=factors, layer=layer, mapped=mapped):
            a = args[0]
            if factors.dim() == 3 and a.shape[0] != factors.shape[0]:
                raise ValueError(f"{factors.shape[0]} per-row interventions for a batch of {a.shape[0]} rows")
            if a.dim() != 3:
                raise ValueError(f"expected the MLP activation as [batch, positions, width], got {tuple(a.shape)}")
            start, prompt = tracker.span(layer, a.shape[1])
            first, end = scaled_slice(policy, start, a.shape[1], prompt)
            if first >= end:
                return None  # generated positions only: untouched
            if first == 0 and end == a.shape[1]:
                return (mapped(a), *args[1:])
            return (torch.cat([a[:, :first], mapped(a[:, first:end]), a[:, end:]], dim=1), *args[1:])

        handles.append(down.register_forward_pre_hook(scale))
    try:
        yield tracker
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


@dataclass(frozen=True)
class RandomBaseline:
    """A random baseline drawn with several seeds. Every draw runs on every unit: the units are
    repeated once per draw, draw by draw (`per_unit`), so the per-row batching can still put several
    draws in one pass, and each draw's measure covers all units (docs/method.md section 8: the draws
    are a random effect when a condition is compared with them)."""

    draws: tuple[Intervention, ...]
    seeds: tuple[int, ...]
    model: ModelIdentity | None = field(default=None, compare=False)  # recorded in the saved file

    def __post_init__(self) -> None:
        if not self.draws or len(self.draws) != len(self.seeds):
            raise ValueError("a random baseline needs one seed per draw, and at least one draw")

    def per_unit(self, n: int) -> list[Intervention]:
        """The intervention of each of the S x n rows: draw 0 on units 0..n-1, then draw 1, ..."""
        return [draw for draw in self.draws for _ in range(n)]

    @property
    def positions(self) -> str:
        return self.draws[0].positions

    def counts_per_layer(self) -> dict[int, int]:
        """Neurons per layer of the first draw (every draw of a per-layer baseline has the same)."""
        return self.draws[0].counts_per_layer()

    def save(self, path: str | Path) -> None:
        draws = [[list(n) for n in draw.neurons] for draw in self.draws]
        _save(path, self.positions, self.model, {"seeds": list(self.seeds), "draws": draws})

    @classmethod
    def load(cls, path: str | Path) -> RandomBaseline:
        data = read_json(path)
        draws = tuple(
            Intervention(tuple((int(l), int(i), float(f)) for l, i, f in draw), data["positions"])
            for draw in data["draws"]
        )
        return cls(
            draws, tuple(int(s) for s in data["seeds"]), ModelIdentity.from_json(data.get("model_identity"), str(path))
        )


Condition = Intervention | RandomBaseline | None
Conditions = dict[str, Condition]


def for_units(condition: Condition, n: int) -> Applied:
    """What `apply_intervention` gets for n units (in input order) under a condition: under a random
    baseline one intervention per row of the units repeated for each draw (`replicated`)."""
    return condition.per_unit(n) if isinstance(condition, RandomBaseline) else condition


def replicated(condition: Condition, units: Sequence[Unit]) -> list[Unit]:
    """The units a condition runs on: repeated once per draw (draw by draw) under a random baseline."""
    return list(units) * (len(condition.draws) if isinstance(condition, RandomBaseline) else 1)


def deactivation_conditions(
    neurons: NeuronSet,
    top_k: int,
    num_layers: int,
    width: int,
    positions: str = Positions.last,
    baseline: str = Baseline.per_layer,
    seed: int = 0,
    seeds: int = 1,
    model: ModelIdentity | None = None,
) -> Conditions:
    """The three conditions of a controlled experiment: normal (None), the top-k neurons of a
    neuron set deactivated, and a random baseline of the same shape drawn with `seeds` seeds
    (seed, seed + 1, ...; the first draw is the single-seed baseline), each draw on every unit.
    `model`: the identity of the model they run on, recorded in their files."""
    neurons.check_model(num_layers, width)
    deactivated = Intervention.from_neurons(neurons, top_k, factor=0.0, positions=positions)
    candidates = list(neurons.layers) or sorted(deactivated.counts_per_layer())
    draws = tuple(random_baseline(deactivated, width, baseline, candidates, seed + s) for s in range(seeds))
    return {
        "normal": None,
        "deactivated": replace(deactivated, model=model),
        "random": RandomBaseline(draws, tuple(seed + s for s in range(seeds)), model),
    }
