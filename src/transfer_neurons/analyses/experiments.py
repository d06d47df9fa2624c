"""Latent-space studies over a model: capture states (with or without an intervention on the L2
inputs), then run the plain analyses of `latent.py` and draw the figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from transfer_neurons.artifacts import plots
from transfer_neurons.artifacts.io import write_json
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.hooks.capture import collect
from transfer_neurons.hooks.interventions import Intervention, apply_intervention, deactivation_conditions
from transfer_neurons.metrics import latent
from transfer_neurons.model.loading import LoadedModel

PARTS = ("h", "act")
States = dict[str, torch.Tensor]  # part -> [L, n, dim]


@dataclass
class PairStates:
    """Per-layer states of one en-L2 pair set: parallel sides and non-parallel sides."""

    en: States
    l2: States
    en_np: States
    l2_np: States

    def metrics(self, k: int = 10, clamp: float | None = None) -> dict[str, list[float]]:
        return latent.pair_metrics(
            self.en["h"], self.l2["h"], self.en_np["h"], self.l2_np["h"],
            self.en["act"], self.l2["act"], self.en_np["act"], self.l2_np["act"], k=k, clamp=clamp,
        )  # fmt: skip


def capture_pair(
    lm: LoadedModel,
    pairs: ParallelData,
    nonparallel: ParallelData | None,
    intervention: Intervention | None = None,
    english: tuple[States, States] | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> PairStates:
    """Capture h and a for a pair set; the intervention applies to L2 inputs only (English untouched).

    Without a non-parallel set, non-parallel pairs are made by shifting the L2 side by one
    sentence. `english` reuses already captured (parallel, non-parallel) English states.
    """

    def run(sentences: list[str], name: str, iv: Intervention | None) -> States:
        with apply_intervention(lm, iv):
            return collect(lm, sentences, PARTS, batch_size=batch_size, desc=name, progress=progress)

    if english is None:
        en = run(pairs.en, "states (en)", None)
        en_np = en if nonparallel is None else run(nonparallel.en, "states (en, non-parallel)", None)
    else:
        en, en_np = english
    l2 = run(pairs.l2, f"states ({pairs.lang})", intervention)
    if nonparallel is None:
        l2_np = {part: value.roll(-1, dims=1) for part, value in l2.items()}
    else:
        l2_np = run(nonparallel.l2, f"states ({pairs.lang}, non-parallel)", intervention)
    return PairStates(en, l2, en_np, l2_np)


def latent_study(
    lm: LoadedModel,
    datasets: list[ParallelData],
    nonparallel: dict[str, ParallelData],
    out: Path,
    k: int = 10,
    clamp: float | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Curves per language pair, centroid similarities and PCA across languages.

    Writes `latent.json` and the figures into `out` and returns what latent.json holds.
    """
    pairs: dict[str, dict] = {}
    layer_states: dict[str, torch.Tensor] = {}
    for data in datasets:
        states = capture_pair(lm, data, nonparallel.get(data.lang), batch_size=batch_size, progress=progress)
        pairs[data.lang] = states.metrics(k, clamp)
        layer_states.setdefault("en", states.en["h"])
        layer_states[data.lang] = states.l2["h"]
    langs = list(layer_states)
    per_layer = [{lang: layer_states[lang][layer] for lang in langs} for layer in range(lm.num_layers)]
    centroid = [latent.centroid_cosines(states) for states in per_layer]
    plots.pca_panels([latent.pca_2d(states, seed) for states in per_layer], out / "pca.png")
    plots.heatmaps(centroid, langs, out / "centroid_similarity.png", "Cosine similarity of centred language centroids")
    _pair_figures(pairs, out)
    result = {
        "model": lm.name,
        "layers": lm.num_layers,
        "k": k,
        "clamp": clamp,
        "seed": seed,
        "nonparallel": {d.lang: "file" if d.lang in nonparallel else "shifted" for d in datasets},
        "pairs": pairs,
        "centroid_similarity": {"langs": langs, "centered": True, "matrices": [m.tolist() for m in centroid]},
        "figures": ["pca.png", "centroid_similarity.png", "mknn.png", "similarity.png", "act_similarity.png"],
    }
    write_json(out / "latent.json", result)
    return result


def _pair_figures(pairs: dict[str, dict], out: Path) -> None:
    plots.layer_curves({f"en-{lang}": c["mknn"] for lang, c in pairs.items()},
                       "Mutual k-NN alignment of parallel en / L2 states", "mutual kNN", out / "mknn.png")  # fmt: skip
    sims, acts = {}, {}
    for lang, c in pairs.items():
        sims[f"{lang} parallel"] = c["parallel_sim_centered"]
        sims[f"{lang} non-parallel"] = c["nonparallel_sim_centered"]
        acts[f"{lang} parallel"] = c["act_parallel_sim"]
        acts[f"{lang} non-parallel"] = c["act_nonparallel_sim"]
    plots.layer_curves(sims, "Cosine similarity of en / L2 states (centred)", "cosine", out / "similarity.png")
    plots.layer_curves(acts, "Cosine similarity of MLP activation vectors", "cosine", out / "act_similarity.png")


def ablation_study(
    lm: LoadedModel,
    pairs: ParallelData,
    nonparallel: ParallelData | None,
    conditions: dict[str, Intervention | None],
    out: Path,
    k: int = 10,
    clamp: float | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, dict[str, list[float]]]:
    """The pair curves under each condition (intervention on L2 inputs only); comparison figures."""
    normal = capture_pair(lm, pairs, nonparallel, None, batch_size=batch_size, progress=progress)
    english = (normal.en, normal.en_np)
    results = {}
    for name, intervention in conditions.items():
        states = normal if intervention is None else capture_pair(
            lm, pairs, nonparallel, intervention, english, batch_size, progress
        )  # fmt: skip
        results[name] = states.metrics(k, clamp)
    gap = {
        name: [p - q for p, q in zip(c["parallel_sim_centered"], c["nonparallel_sim_centered"], strict=True)]
        for name, c in results.items()
    }
    lang = pairs.lang
    plots.layer_curves({n: c["mknn"] for n, c in results.items()},
                       f"Mutual k-NN alignment, en-{lang}", "mutual kNN", out / "ablation_mknn.png")  # fmt: skip
    plots.layer_curves(gap, f"Parallel minus non-parallel similarity (centred), en-{lang}", "cosine gap",
                       out / "ablation_similarity_gap.png")  # fmt: skip
    plots.layer_curves({n: c["act_parallel_sim"] for n, c in results.items()},
                       f"MLP activation similarity of parallel pairs, en-{lang}", "cosine",
                       out / "ablation_act_similarity.png")  # fmt: skip
    return results


def run_ablation(
    lm: LoadedModel,
    neurons: Path,
    top_k: int,
    pairs: ParallelData,
    nonparallel: ParallelData | None,
    out: Path,
    baseline: str = "per-layer",
    seed: int = 0,
    k: int = 10,
    clamp: float | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Deactivate the top-k neurons of `neurons` (a detect neurons.json) on L2 inputs, compare with
    normal and a seeded random baseline; writes ablation.json, intervention.json, baseline.json and
    figures into `out` and returns what ablation.json holds."""
    conditions = deactivation_conditions(neurons, top_k, lm.num_layers, lm.mlp_width, "last", baseline, seed)
    results = ablation_study(lm, pairs, nonparallel, conditions, out, k, clamp, batch_size, progress)
    conditions["deactivated"].save(out / "intervention.json")
    random = conditions["random"]
    random.save(out / "baseline.json")
    middle = lm.num_layers // 2
    result = {
        "model": lm.name,
        "lang": pairs.lang,
        "top_k": top_k,
        "layers": lm.num_layers,
        "k": k,
        "clamp": clamp,
        "baseline": {"mode": baseline, "seed": seed, "counts_per_layer": random.counts_per_layer()},
        "nonparallel": "shifted" if nonparallel is None else "file",
        "middle_layer": middle,
        "summary": {
            name: {
                "mean_mknn": sum(c["mknn"]) / len(c["mknn"]),
                "middle_gap": c["parallel_sim_centered"][middle] - c["nonparallel_sim_centered"][middle],
            }
            for name, c in results.items()
        },
        "conditions": results,
    }
    write_json(out / "ablation.json", result)
    return result
