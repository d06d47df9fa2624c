"""Type-1 / Type-2 transfer-neuron detection (docs/method.md sections 2-3): two streaming passes.

Pass 1 averages the layer outputs of the sentences that define the target centroid (Type-1:
English and L2 of the pairs, the shared space; Type-2: the L2 sentences). Pass 2 runs the L2
sentences again, stops after the last candidate layer, and adds every neuron's closed-form score
for every sentence into one running sum per layer. Memory does not grow with the sentence count.

With a reference pool (`--center`, docs/method.md section 3) the mean layer output over the pool, `mu^l`,
is subtracted from `r` and from the centroid before the cosine (`LayerScorer(center=...)`): the
centred score, which massive hidden dimensions shared by every state no longer dominate.

Under torch.distributed each rank runs its shard of the sentences and the running sums are added
over ranks (`distributed.all_reduce_sum`): every rank ends with the same result.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from transfer_neurons.analyses.base import Config
from transfer_neurons.analyses.pool import Sentences, check_languages, describe
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.io import read_tensors, write_tensors
from transfer_neurons.artifacts.neurons import ModelIdentity, NeuronSet, read_neurons
from transfer_neurons.artifacts.result import Result
from transfer_neurons.choices import Method, NeuronType, accepts_kind
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import capture
from transfer_neurons.hooks.distributed import all_reduce_sum, is_main, shard, world_size
from transfer_neurons.metrics.scoring import LayerScorer, rank_neurons
from transfer_neurons.model.loading import LoadedModel

TYPES = tuple(t.value for t in NeuronType)
TYPE1_SHARE = 0.625  # Type-1 candidates: the first round(0.625 L) layers (20 of 32 in the paper)


@accepts_kind
def default_layers(num_layers: int, neuron_type: NeuronType | str) -> list[int]:
    """Default candidate layers: Type-1 the first round(0.625 L) layers, Type-2 the rest."""
    split = int(TYPE1_SHARE * num_layers + 0.5)
    return list(range(split)) if neuron_type == "type1" else list(range(split, num_layers))


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


class DetectConfig(Config):
    """Settings of one detection (the type is chosen per run: a study detects several)."""

    top_n: int = Field(1000, ge=1, description="Top-ranked neurons listed in neurons.json (per type and language).")
    layers: list[int] | None = Field(
        None, description="Candidate layers; default: Type-1 the first round(0.625 L), Type-2 the rest."
    )
    paper_compat: bool = Field(
        False, description="Last-layer centroid from the final-norm output, as in the authors' code."
    )
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")


@dataclass
class Detection(Result):
    """Result of one detection: scores [L, m] (NaN outside candidates and for neurons a method leaves
    unscored), the top-n, and for the TN methods the target centroids [L, d] (and the centred
    score's reference mean [L, d]). `neuron_type` is the type (None for LAPE and AP), `method` a `Method`
    value, `pool` the reference pool's description (None for the raw score)."""

    command: ClassVar[str] = "detect"

    neuron_type: str | None
    lang: str
    model: str
    layers: list[int]
    scores: torch.Tensor
    centroids: torch.Tensor | None
    top: list[tuple[int, int, float]]
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    method: str = Method.tn.value
    pool: dict | None = None
    reference_mean: torch.Tensor | None = None
    identity: ModelIdentity | None = None  # the model's (`LoadedModel.identity`), recorded in neurons.json

    @property
    def neuron_set(self) -> NeuronSet:
        return NeuronSet(
            tuple(self.top),
            self.lang,
            self.neuron_type,
            self.model,
            tuple(self.layers),
            self.method,
            identity=self.identity,
        )

    @property
    def kind(self) -> str | None:
        """Deprecated: the older name of `neuron_type`."""
        warnings.warn("Detection.kind is deprecated; use Detection.neuron_type", DeprecationWarning, stacklevel=2)
        return self.neuron_type

    @property
    def label(self) -> str:
        """`type1` for the raw score, `type1 tn-centred`, or the method (`lape`, `ap`)."""
        return " ".join(x for x in (self.neuron_type, None if self.method == Method.tn else self.method) if x)

    def write_files(self, out: Path) -> list[str]:
        write_tensors(out / names.SCORES, {"scores": self.scores.float()})
        files = [names.SCORES]
        if self.centroids is not None:
            tensors = {"centroids": self.centroids.float()}
            if self.reference_mean is not None:
                tensors["reference_mean"] = self.reference_mean.float()
            write_tensors(out / names.CENTROIDS, tensors)
            files.append(names.CENTROIDS)
        self.neuron_set.save(out / names.NEURONS)
        plots.layer_histograms(
            {f"{self.label} {self.lang}": self.headline()["per_layer"]},
            out / names.LAYERS_FIGURE,
            f"Layers of the top-{len(self.top)} {self.label} neurons, {self.lang}",
        )
        return [*files, names.NEURONS, names.LAYERS_FIGURE]

    def manifest_fields(self) -> dict[str, Any]:
        """The generic fields after the model, method, type, language, layers and pool."""
        head = {"model": self.model, "method": self.method, "type": self.neuron_type, "lang": self.lang}
        return head | {"layers": self.layers, "pool": self.pool} | super().manifest_fields()

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """The neuron set, the scores and the centroids."""
        neurons = read_neurons(out / names.NEURONS)
        tensors = read_tensors(out / names.CENTROIDS) if names.CENTROIDS in manifest.get("files", {}) else {}
        return {
            "neuron_type": neurons.neuron_type,
            "lang": str(neurons.lang),
            "layers": list(neurons.layers),
            "scores": read_tensors(out / names.SCORES)["scores"],
            "centroids": tensors.get("centroids"),
            "top": list(neurons.top),
            "method": neurons.method,
            "pool": manifest.get("pool"),
            "reference_mean": tensors.get("reference_mean"),
            "identity": neurons.identity,
        }

    def headline(self) -> dict[str, Any]:
        """What the study records of the step and the model comparison reads: the top 10, the top-n's
        count per layer, their number and the sentences scored."""
        counts = Counter(layer for layer, _, _ in self.top)
        return {
            "top": [list(t) for t in self.top[:10]],
            "per_layer": [counts[layer] for layer in range(self.scores.shape[0])],
            "top_n": len(self.top),
            "sentences": self.settings.get("n_sentences"),
        }

    def summary_lines(self) -> list[str]:
        what = f"{self.neuron_type} transfer neurons" if self.neuron_type else "language-specific neurons"
        pool = ""
        if self.pool:
            sizes = self.pool["sizes"]
            pool = f", pool {'/'.join(sizes)} of {sum(sizes.values())} sentences"
        lines = [
            f"{what} for '{self.lang}' in {self.model} (method {self.method}{pool}): scored {len(self.layers)} "
            f"layers x {self.scores.shape[1]} neurons on {self.settings.get('n_sentences')} sentences in "
            f"{sum(self.timings.values()):.1f} s",
            "top neurons (layer, neuron, score):",
        ]
        lines += [f"  L{layer:<3} #{neuron:<6} {score:+.6f}" for layer, neuron, score in self.top[:10]]
        spread = ", ".join(f"L{layer}: {n}" for layer, n in enumerate(self.headline()["per_layer"]) if n)
        lines.append(f"layers of the top {len(self.top)}: {spread}")
        if len(self.top) < self.settings.get("top_n", 0):
            lines.append(
                f"only {len(self.top)} neurons pass {self.method}'s filter for '{self.lang}', "
                f"fewer than top-n {self.settings['top_n']}"
            )
        return lines


@accepts_kind
def run(
    lm: LoadedModel,
    data: ParallelData,
    neuron_type: NeuronType | str,
    config: DetectConfig,
    progress: bool = False,
    pool: Sequence[Sentences] | None = None,
) -> Detection:
    """`detect` with the settings of a config (the command line and the study call this); with a
    `pool`, the centred score."""
    return detect(
        lm, data, neuron_type, config.layers, config.top_n, config.batch_size, config.paper_compat, progress, pool=pool
    )


def candidate_layers(lm: LoadedModel, layers: list[int], top_n: int) -> list[int]:
    """`layers` sorted, once each; InputError for a layer outside the model or top_n out of range."""
    num_layers = lm.num_layers
    layers = sorted(set(layers))
    if not layers or not all(0 <= layer < num_layers for layer in layers):
        raise InputError(f"candidate layers {layers} must lie inside the model's layers 0-{num_layers - 1}")
    candidates = len(layers) * lm.mlp_width
    if not 1 <= top_n <= candidates:
        raise InputError(f"--top-n {top_n} must be between 1 and the {candidates} candidate neurons")
    return layers


def run_settings(lm: LoadedModel) -> dict[str, Any]:
    """How the model ran (recorded with every detection's settings)."""
    return {
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": str(lm.device),
        "device_map": _device_map(lm),
        "world_size": world_size(),
    }


@accepts_kind
def detect(
    lm: LoadedModel,
    data: ParallelData,
    neuron_type: NeuronType | str = NeuronType.type1,
    layers: list[int] | None = None,
    top_n: int = 1000,
    batch_size: int = 16,
    paper_compat: bool = False,
    progress: bool = False,
    pool: Sequence[Sentences] | None = None,
) -> Detection:
    """Score every neuron of the candidate layers for moving L2 sentences toward the target space.

    With `pool` (at least three languages; see `analyses.pool`), the centred score: `r` and the
    centroid minus the pool's mean layer output. Under torch.distributed (see `distributed`), call
    it on every rank with the same arguments.
    """
    neuron_type = str(getattr(neuron_type, "value", neuron_type))
    if neuron_type not in TYPES:
        raise InputError(f"unknown type '{neuron_type}'; use type1 or type2")
    if pool is not None:
        check_languages(pool, 3, "the centred score (--center)")
    num_layers, width = lm.num_layers, lm.mlp_width
    layers = candidate_layers(lm, default_layers(num_layers, neuron_type) if layers is None else layers, top_n)

    progress = progress and is_main()
    timings: dict[str, float] = {}
    known: dict[int, torch.Tensor] = {}  # mean states per sentence list (by identity): each run once

    def mean_of(sentences: list[str], name: str) -> torch.Tensor:
        if id(sentences) not in known:
            known[id(sentences)] = _mean_states(lm, sentences, batch_size, paper_compat, progress, name)
        return known[id(sentences)]

    start = time.perf_counter()
    sides = {"en": data.en, data.lang: data.l2} if neuron_type == "type1" else {data.lang: data.l2}
    centroids = torch.stack([mean_of(sentences, f"centroid ({name})") for name, sentences in sides.items()]).mean(0)
    timings["centroids"] = time.perf_counter() - start

    reference_mean = None
    if pool is not None:
        start = time.perf_counter()
        reference_mean = _pool_mean(pool, mean_of)
        timings["reference_mean"] = time.perf_counter() - start

    start = time.perf_counter()
    desc = f"scoring ({data.lang})"
    sums = _score_sums(lm, data.l2, centroids, layers, batch_size, progress, desc, reference_mean)
    scores = torch.full((num_layers, width), float("nan"))
    scores[layers] = (sums / len(data.l2)).float()
    timings["scoring"] = time.perf_counter() - start

    settings = {
        "top_n": top_n,
        "batch_size": batch_size,
        "paper_compat": paper_compat,
        "center": pool is not None,
        "n_sentences": len(data.l2),
        **run_settings(lm),
    }
    return Detection(
        neuron_type=neuron_type,
        lang=data.lang,
        model=lm.name,
        layers=layers,
        scores=scores,
        centroids=centroids.float(),
        top=rank_neurons(scores, layers, top_n),
        settings=settings,
        timings=timings,
        method=Method.tn.value if pool is None else Method.tn_centred.value,
        pool=None if pool is None else describe(pool),
        reference_mean=None if reference_mean is None else reference_mean.float(),
        identity=lm.identity(),
    )


def _pool_mean(pool: Sequence[Sentences], mean_of: Callable[[list[str], str], torch.Tensor]) -> torch.Tensor:
    """`mu^l`: the mean layer output over every sentence of the pool, [L, d] float64."""
    total = sum(len(part.sentences) for part in pool)
    mean = torch.zeros((), dtype=torch.float64)
    for part in pool:
        mean = mean + mean_of(part.sentences, f"reference mean ({part.lang})") * (len(part.sentences) / total)
    return mean


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
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over sentences of every candidate neuron's cosine change, [len(layers), m] float64
    (centred on `center` [L, d] when given)."""
    adapter, model = lm.adapter, lm.model
    scorers = {
        layer: LayerScorer(
            adapter.value_vectors(model, layer),
            adapter.post_norm_gain(model, layer),
            centroids[layer],
            None if center is None else center[layer],
        )
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


def _device_map(lm: LoadedModel) -> str | dict | None:
    """The placement accelerate chose under a device map (module -> device), else the map asked for."""
    placement = getattr(lm.model, "hf_device_map", None)
    return lm.device_map if placement is None else {name: str(device) for name, device in placement.items()}
