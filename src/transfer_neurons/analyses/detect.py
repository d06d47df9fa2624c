"""Type-1 / Type-2 transfer-neuron detection (DESIGN.md 3.1, 3.2): two streaming passes.

Pass 1 averages the layer outputs of the sentences that define the target centroid (Type-1:
English and L2 of the pairs, the shared space; Type-2: the L2 sentences). Pass 2 runs the L2
sentences again, stops after the last candidate layer, and adds every neuron's closed-form score
for every sentence into one running sum per layer. Memory does not grow with the sentence count.

Under torch.distributed each rank runs its shard of the sentences and the running sums are added
over ranks (`distributed.all_reduce_sum`): every rank ends with the same result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transfer_neurons.artifacts.io import write_json, write_tensors
from transfer_neurons.artifacts.manifest import write_manifest
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.distributed import all_reduce_sum, is_main, shard, world_size
from transfer_neurons.metrics.scoring import LayerScorer, rank_neurons
from transfer_neurons.model.loading import LoadedModel

TYPES = ("type1", "type2")
TYPE1_SHARE = 0.625  # Type-1 candidates: the first round(0.625 L) layers (20 of 32 in the paper)


def default_layers(num_layers: int, kind: str) -> list[int]:
    """Default candidate layers: Type-1 the first round(0.625 L) layers, Type-2 the rest."""
    split = int(TYPE1_SHARE * num_layers + 0.5)
    return list(range(split)) if kind == "type1" else list(range(split, num_layers))


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """Parse '3', '0-19' or '0-3,8,10-12' into sorted layer indices, each inside the model."""
    layers: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError as exc:
            raise InputError(f"--layers '{spec}' is not a layer list like 0-19 or 0-3,8") from exc
        if not 0 <= first <= last < num_layers:
            raise InputError(f"--layers '{spec}' is outside the model's layers 0-{num_layers - 1}")
        layers.update(range(first, last + 1))
    return sorted(layers)


@dataclass
class Detection:
    """Result of one detection: scores [L, m] (NaN outside candidates), centroids [L, d], top-n."""

    kind: str
    lang: str
    model: str
    layers: list[int]
    scores: torch.Tensor
    centroids: torch.Tensor
    top: list[tuple[int, int, float]]
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def save(self, out: str | Path, inputs: dict | None = None) -> Path:
        """Write scores/centroids (safetensors), neurons.json and manifest.json (last) into `out`."""
        out = Path(out)
        write_tensors(out / "scores.safetensors", {"scores": self.scores.float()})
        write_tensors(out / "centroids.safetensors", {"centroids": self.centroids.float()})
        neurons = {"type": self.kind, "lang": self.lang, "model": self.model, "layers": self.layers}
        write_json(out / "neurons.json", {**neurons, "top": [list(t) for t in self.top]})
        write_manifest(
            out,
            "detect",
            **neurons,
            inputs=inputs or {},
            settings=self.settings,
            seed=None,
            timings_s=self.timings,
            files=["scores.safetensors", "centroids.safetensors", "neurons.json"],
        )
        return out


def detect(
    lm: LoadedModel,
    data: ParallelData,
    kind: str = "type1",
    layers: list[int] | None = None,
    top_n: int = 1000,
    batch_size: int = 16,
    paper_compat: bool = False,
    progress: bool = True,
) -> Detection:
    """Score every neuron of the candidate layers for moving L2 sentences toward the target space.

    Under torch.distributed (see `distributed`), call it on every rank with the same arguments.
    """
    if kind not in TYPES:
        raise InputError(f"unknown type '{kind}'; use type1 or type2")
    num_layers, width = lm.num_layers, lm.mlp_width
    layers = default_layers(num_layers, kind) if layers is None else sorted(set(layers))
    if not layers or not all(0 <= layer < num_layers for layer in layers):
        raise InputError(f"candidate layers {layers} must lie inside the model's layers 0-{num_layers - 1}")
    candidates = len(layers) * width
    if not 1 <= top_n <= candidates:
        raise InputError(f"--top-n {top_n} must be between 1 and the {candidates} candidate neurons")

    progress = progress and is_main()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sides = {"en": data.en, data.lang: data.l2} if kind == "type1" else {data.lang: data.l2}
    means = [
        _mean_states(lm, sentences, batch_size, paper_compat, progress, f"centroid ({name})")
        for name, sentences in sides.items()
    ]
    centroids = torch.stack(means).mean(0)
    timings["centroids"] = time.perf_counter() - start

    start = time.perf_counter()
    sums = _score_sums(lm, data.l2, centroids, layers, batch_size, progress, f"scoring ({data.lang})")
    scores = torch.full((num_layers, width), float("nan"))
    scores[layers] = (sums / len(data.l2)).float()
    timings["scoring"] = time.perf_counter() - start

    settings = {
        "top_n": top_n,
        "batch_size": batch_size,
        "paper_compat": paper_compat,
        "center": False,
        "n_sentences": len(data.l2),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": str(lm.device),
        "device_map": _device_map(lm),
        "world_size": world_size(),
    }
    return Detection(
        kind=kind,
        lang=data.lang,
        model=lm.name,
        layers=layers,
        scores=scores,
        centroids=centroids.float(),
        top=rank_neurons(scores, layers, top_n),
        settings=settings,
        timings=timings,
    )


def _mean_states(
    lm: LoadedModel, sentences: list[str], batch_size: int, paper_compat: bool, progress: bool, desc: str
) -> torch.Tensor:
    """Mean layer output h^l over `sentences`, [L, d] float64 (last layer: final-norm output if paper_compat)."""
    parts = ("h", "final") if paper_compat else ("h",)
    total = torch.zeros(lm.num_layers, lm.hidden_size, dtype=torch.float64, device=lm.device)
    for batch in capture(lm, shard(sentences), parts, batch_size=batch_size, desc=desc, progress=progress):
        states = dict(batch["h"])
        if paper_compat:
            states.update(batch["final"])
        total += torch.stack([states[layer].sum(0) for layer in range(lm.num_layers)]).double()
    return (all_reduce_sum(total) / len(sentences)).cpu()


def _score_sums(
    lm: LoadedModel,
    sentences: list[str],
    centroids: torch.Tensor,
    layers: list[int],
    batch_size: int,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """Sum over sentences of every candidate neuron's cosine change, [len(layers), m] float64."""
    adapter, model = lm.adapter, lm.model
    scorers = {
        layer: LayerScorer(adapter.value_vectors(model, layer), adapter.post_norm_gain(model, layer), centroids[layer])
        for layer in layers
    }
    sums = torch.zeros(len(layers), lm.mlp_width, dtype=torch.float64, device=lm.device)
    parts = ("h", "mlp", "act", "scale")
    batches = capture(lm, shard(sentences), parts, layers=layers, batch_size=batch_size, desc=desc, progress=progress)
    for batch in batches:
        for row, layer in enumerate(layers):
            r = batch["h"][layer] - batch["mlp"][layer]
            sums[row] += scorers[layer].deltas(r, batch["act"][layer], batch["scale"][layer]).sum(0)
    return all_reduce_sum(sums).cpu()


def _device_map(lm: LoadedModel) -> dict | None:
    """The placement accelerate chose under a device map (module -> device), else the map asked for."""
    placement = getattr(lm.model, "hf_device_map", None)
    return lm.device_map if placement is None else {name: str(device) for name, device in placement.items()}
