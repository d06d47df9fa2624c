"""Language-neuron methods side by side (docs/method.md sections 3, 8): for one model and
language, the top-k of each method (`tn`, `tn-centred`, `lape`, `ap`; each detected on the same
train pairs and reference pool) under the same tests and seeds:

- deactivation on the test pairs (`ablate.run`): the effect on mean mutual kNN and the mean centred
  gap vs a multi-seed random baseline, with intervals over the pairs and paired p;
- optionally the output language of L2 test sentences continued under deactivation, and QA F1
  where the built-in set covers the language (the downstream analyses' `run`);
- eta^2 of the set's language vs the rest (one `specificity.run` over every set, on the test
  pairs' en and L2 sides and the reference sentences): the share with eta^2 > 0.1 and the mean;
- Jaccard between the methods' top-k and with the raw TN Type-1 / Type-2 sets (detected here), and
  the mean TN Type-1 / Type-2 score of each method's neurons (over those in the type's candidate
  layers, interval over the neurons): are language-specific neurons transfer neurons?
- the share of each value vector `u_i` (`g * v_i` under a post-MLP norm: what the neuron adds to
  the residual stream) in its layer's massive dimensions (`metrics.vocab.massive_dimensions` of the
  mean last-token layer output over the test sentences, en and L2; share 0 in a layer without any).

Forward passes (M methods, n train pairs, t test pairs, R reference sentences): one detection per
method and for the Type-2 TN set (Type-1 too unless `tn` is compared; TN about 3n sentences,
tn-centred + R, LAPE and AP 2n + R); 2t for the mean states; per method one ablation (normal 4t,
the same for every method; deactivated 2t; random 2t); one specificity pass over 2t + R; with the
downstream parts, per method 3 conditions x max_items generations for each of output language and
QA. The rest is vectorised tensor arithmetic on what these passes hold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator

from transfer_neurons.analyses import ablate, output_lang
from transfer_neurons.analyses import qa as qa_analysis
from transfer_neurons.analyses import specificity as specificity_analysis
from transfer_neurons.analyses.base import ControlConfig, clamp_field
from transfer_neurons.analyses.detect import DetectConfig, Detection, default_layers
from transfer_neurons.analyses.latent import check_nonparallel, check_pairs
from transfer_neurons.analyses.methods import check_pool, detect_method
from transfer_neurons.analyses.pool import Sentences, by_language, pool_parts
from transfer_neurons.analyses.qa import QAItem, QAScores
from transfer_neurons.analyses.specificity import Comparison
from transfer_neurons.artifacts import names, plots
from transfer_neurons.artifacts.codec import encode, field_values
from transfer_neurons.artifacts.io import write_json
from transfer_neurons.artifacts.neurons import Neuron, NeuronSet
from transfer_neurons.artifacts.result import Result, read_manifest
from transfer_neurons.choices import Method, NeuronType
from transfer_neurons.data.pairs import ParallelData
from transfer_neurons.data.qa import load_qa
from transfer_neurons.errors import InputError
from transfer_neurons.hooks.capture import collect
from transfer_neurons.metrics import overlap, vocab
from transfer_neurons.metrics.scoring import effective_values
from transfer_neurons.metrics.uncertainty import Estimate, mean_estimate
from transfer_neurons.model.loading import LoadedModel

TN_SETS = ("type1", "type2")  # the raw TN sets every method is compared with
EFFECTS = {"mean_mknn": "mutual kNN", "mean_gap": "centred gap"}  # ablation metric -> label
CONTROL = ("top_k", "baseline", "seed", "baseline_seeds", "bootstrap", "batch_size")  # shared by every run


class MethodsConfig(ControlConfig):
    """Settings of one comparison: the methods, the controlled experiment (top-k, baseline, seeds,
    bootstrap), the ablation's k and clamp, and the optional downstream parts."""

    methods: list[Method] = Field(default_factory=lambda: list(Method), min_length=1, description="Methods compared.")
    k: int = Field(10, ge=1, description="Neighbours for mutual kNN.")
    clamp: float | None = clamp_field()
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    output_lang: bool = Field(True, description="Output language of the L2 test sentences under deactivation.")
    qa: bool = Field(True, description="QA F1 under deactivation where the built-in set covers the language.")
    max_items: int | None = Field(16, ge=1, description="Prompts and questions of the downstream parts.")

    @field_validator("methods")
    @classmethod
    def _once_each(cls, methods: list[Method]) -> list[Method]:
        if len(set(methods)) != len(methods):
            raise ValueError("name each method once")
        return methods

    def control(self) -> dict[str, Any]:
        """The settings every controlled run of the comparison shares."""
        return self.model_dump(include=set(CONTROL))


@dataclass(frozen=True)
class MethodMeasures:
    """One method's top-k under every test: ablate's summary (condition -> metric -> Estimate), the
    target-language eta^2 summary of the top-k and of its random baseline, the massive-dimension share,
    the mean TN score per type with how many neurons have one, and the downstream conditions (None
    when not run)."""

    ablation: dict[str, dict[str, Estimate]]
    specificity: Comparison
    massive_share: Estimate
    tn_scores: dict[str, Estimate | None]  # None: no neuron of the set has a score of the type
    tn_scored: dict[str, int]
    output_lang: dict[str, dict[str, Estimate]] | None = None
    qa: dict[str, QAScores] | None = None

    def effect(self, metric: str) -> Estimate:
        """Deactivated minus random on an ablation metric, with its interval and paired p."""
        deactivated = self.ablation["deactivated"][metric]
        assert deactivated.effect_vs_random is not None
        return Estimate(deactivated.effect_vs_random.value, deactivated.effect_vs_random.ci, deactivated.p_vs_random)

    def to_json(self) -> dict[str, Any]:
        """The measures by the codec, each TN score with its count of scored neurons."""
        plain = ("ablation", "output_lang", "qa", "specificity", "massive_share")
        return {name: encode(getattr(self, name)) for name in plain} | {
            "tn_scores": {
                t: ({"value": None, "ci": None} if e is None else e.to_json()) | {"n_scored": self.tn_scored[t]}
                for t, e in self.tn_scores.items()
            }
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MethodMeasures:
        scores = data["tn_scores"]
        return cls(
            **field_values(cls, data, frozenset({"tn_scores"})),
            tn_scores={t: None if e["value"] is None else Estimate.from_json(e) for t, e in scores.items()},
            tn_scored={t: int(e["n_scored"]) for t, e in scores.items()},
        )


@dataclass
class MethodsResult(Result):
    """Per method its measures; Jaccard between every two of the methods' and the TN Type-1 / Type-2
    top-k (`jaccard[a][b]`); the massive dimensions of each layer; the detections (each method's,
    and the raw TN `type1` / `type2`), each saved as a detect folder `<name>/` for later commands."""

    command: ClassVar[str] = "compare-methods"
    SUMMARY: ClassVar[str] = names.METHODS
    SETTINGS: ClassVar[tuple[str, ...]] = ("lang",)
    ELSEWHERE: ClassVar[tuple[str, ...]] = ("detections",)

    model: str
    lang: str
    config: MethodsConfig
    n_pairs: int
    methods: dict[str, MethodMeasures]
    jaccard: dict[str, dict[str, float]]
    massive_dims: dict[int, list[int]]
    detections: dict[str, Detection] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The content of methods.json."""
        return {
            "schema_version": names.SCHEMA_VERSION,
            "model": self.model,
            "lang": self.lang,
            "top_k": self.config.top_k,
            "n_pairs": self.n_pairs,
            "seed": self.config.seed,
            "bootstrap": self.config.bootstrap,
            "baseline_seeds": self.config.baseline_seeds,
            "methods": {name: m.to_json() for name, m in self.methods.items()},
            "jaccard": self.jaccard,
            "massive_dims": {str(layer): dims for layer, dims in self.massive_dims.items()},
            "detections": list(self.detections),
        }

    def write_files(self, out: Path) -> list[str]:
        files = [names.METHODS, names.METHODS_FIGURE]
        write_json(out / names.METHODS, self.to_json())
        self.plot(out / names.METHODS_FIGURE)
        for name, detection in self.detections.items():
            detection.save(out / name)
            written = [*read_manifest(out / name)["files"], names.MANIFEST]
            files += [f"{name}/{file}" for file in written]
        return files

    def plot(self, path: Path) -> None:
        """Deactivated minus random per method on mutual kNN and the centred gap, with 95 % intervals."""
        effects = {
            name: {label: m.effect(metric) for metric, label in EFFECTS.items()} for name, m in self.methods.items()
        }
        draws = self.config.baseline_seeds
        plots.grouped_bars(
            {name: {label: e.value for label, e in v.items()} for name, v in effects.items()},
            f"Top-{self.config.top_k} deactivated minus random, en-{self.lang}",
            "effect vs random",
            path,
            errors={name: {label: e.ci for label, e in v.items() if e.ci is not None} for name, v in effects.items()},
            n_label=f"n = {self.n_pairs} test pairs; random: {draws} draw{'s' * (draws > 1)}; {2 * len(effects)} tests",
        )

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """The detect folders the manifest lists."""
        folders = dict.fromkeys(name.split("/")[0] for name in manifest["files"] if "/" in name)
        return {"detections": {name: Detection.load(out / name) for name in folders}}

    def headline(self) -> dict[str, Any]:
        """What the study records of the step: the methods compared and the top-k."""
        return {"methods": [m.value for m in self.config.methods], "top_k": self.config.top_k}

    def summary_lines(self) -> list[str]:
        return [
            f"{r['method']:>10}: mutual kNN vs random {r['mknn_effect']} ({r['mknn_p']}); centred gap vs random "
            f"{r['gap_effect']} ({r['gap_p']}); eta^2 > 0.1 (p < 0.05) {r['eta2_share']}; massive share "
            f"{r['massive_share']}; Jaccard with Type-1 {r['jaccard_type1']}"
            for r in report_rows(self)
        ]


def report_rows(result: MethodsResult) -> list[dict[str, str]]:
    """One printable row per method for a report table: the ablation effects vs random with their
    intervals and p, eta^2 share and mean, massive share, Jaccard and mean TN score per type."""
    rows = []
    for name, m in result.methods.items():
        mknn, gap = m.effect("mean_mknn"), m.effect("mean_gap")
        target = m.specificity.top
        row = {
            "method": name,
            "mknn_effect": mknn.text(),
            "mknn_p": "" if mknn.p_vs_random is None else f"p = {mknn.p_vs_random:.3g}",
            "gap_effect": gap.text(),
            "gap_p": "" if gap.p_vs_random is None else f"p = {gap.p_vs_random:.3g}",
            "eta2_share": target.share_eta2_gt_0_1.text(),
            "mean_eta2": target.mean_eta2.text(),
            "massive_share": m.massive_share.text(),
        }
        for neuron_type in TN_SETS:
            row[f"jaccard_{neuron_type}"] = f"{result.jaccard[name][neuron_type]:.3f}"
            scored = f" ({m.tn_scored[neuron_type]} of {result.config.top_k})"
            score = m.tn_scores[neuron_type]
            row[f"tn_{neuron_type}_score"] = ("n/a" if score is None else score.text(4)) + scored
        rows.append(row)
    return rows


def check_inputs(
    train: ParallelData,
    test: ParallelData,
    nonparallel: ParallelData | None,
    reference: Sequence[Sentences],
    config: MethodsConfig,
) -> None:
    """InputError (before any model pass) for pairs of other languages, too few test pairs for the
    kNN, a non-parallel file of another length, or a pool too small for a method."""
    if test.lang != train.lang:
        raise InputError(f"the test pairs are en-{test.lang} but the train pairs en-{train.lang}")
    check_pairs(test, config.k)
    if nonparallel is not None:
        check_nonparallel(test, nonparallel, "the non-parallel file")
    for method in config.methods:
        if method is not Method.tn:
            check_pool(method, train.lang, pool_parts(train, reference))


def run(
    lm: LoadedModel,
    train: ParallelData,
    test: ParallelData,
    nonparallel: ParallelData | None,
    reference: Sequence[Sentences],
    config: MethodsConfig,
    source: str | None = None,
    progress: bool = False,
) -> MethodsResult:
    """The comparison (the command line and a study step call this with loaded pairs and reference
    sentences; `source` names the train file in the detections' pools). InputError before any model
    pass for bad inputs, and before any ablation for a method that lists fewer than top-k neurons."""
    check_inputs(train, test, nonparallel, reference, config)
    k, lang, start = config.top_k, train.lang, time.perf_counter()
    for neuron_type in TN_SETS:
        candidates = len(default_layers(lm.num_layers, neuron_type)) * lm.mlp_width
        if k > candidates:
            raise InputError(f"--top-k {k} exceeds the {candidates} candidate neurons of the TN {neuron_type} set")
    detect_config = DetectConfig(top_n=k, batch_size=config.batch_size)
    runs = [(m.value, m, NeuronType.type1) for m in config.methods] + [(t, Method.tn, NeuronType(t)) for t in TN_SETS]
    detections: dict[str, Detection] = {}
    for name, method, neuron_type in runs:  # the raw Type-1 set is the `tn` method's when that is compared
        same = [d for d in detections.values() if d.method == method and d.neuron_type == neuron_type]
        detections[name] = (
            same[0]
            if same
            else detect_method(lm, method, train, reference, detect_config, neuron_type, source, progress)
        )
        if len(detections[name].top) < k:
            raise InputError(
                f"method {name} lists {len(detections[name].top)} neurons for '{lang}', fewer than --top-k {k}; "
                "lower --top-k or give it more sentences"
            )
    detected = time.perf_counter()
    tops = {name: d.neuron_set.neurons(k) for name, d in detections.items()}
    mean = collect(lm, test.en + test.l2, ("h",), batch_size=config.batch_size, progress=progress)["h"].double().mean(1)
    massive = {layer: vocab.massive_dimensions(mean[layer]) for layer in range(lm.num_layers)}
    shares = massive_shares(lm, {m.value: tops[m.value] for m in config.methods}, massive)
    sets = {m.value: detections[m.value].neuron_set for m in config.methods}
    ablate_config = ablate.AblateConfig(**config.control(), k=config.k, clamp=config.clamp)
    ablations = {name: ablate.run(lm, s, test, nonparallel, ablate_config, progress) for name, s in sets.items()}
    ablated = time.perf_counter()
    sentences = by_language([Sentences("en", test.en), Sentences(lang, test.l2), *reference])
    shared = config.control()
    spec_config = specificity_analysis.SpecificityConfig(top_n=shared.pop("top_k"), **shared)
    eta = specificity_analysis.run(lm, sentences, sets, spec_config, progress)
    measures = {}
    for name, s in sets.items():
        scored = {t: tn_score(detections[t].scores, tops[name], config) for t in TN_SETS}
        measures[name] = MethodMeasures(
            ablation=ablations[name].summary,
            specificity=eta.sets[name].labellings["target"],
            massive_share=mean_estimate(shares[name].numpy(), config.bootstrap, config.seed),
            tn_scores={t: estimate for t, (estimate, _) in scored.items()},
            tn_scored={t: n for t, (_, n) in scored.items()},
            **downstream_parts(lm, test, s, config, sorted(sentences), progress),
        )
    end = time.perf_counter()
    return MethodsResult(
        model=lm.name,
        lang=lang,
        config=config,
        n_pairs=len(test),
        methods=measures,
        jaccard={a: {b: overlap.jaccard(tops[a], tops[b]) for b in tops} for a in tops},
        massive_dims=massive,
        detections=detections,
        timings={"detections": detected - start, "ablations": ablated - detected, "total": end - start},
    )


def downstream_parts(
    lm: LoadedModel, test: ParallelData, neurons: NeuronSet, config: MethodsConfig, langs: list[str], progress: bool
) -> dict[str, Any]:
    """The output language of the first max_items L2 test sentences and QA on the built-in
    questions (when it has the language), each under the set's deactivation, as far as asked."""
    out: dict[str, Any] = {}
    if config.output_lang:
        ol_config = output_lang.OutputLangConfig(
            **config.control(), max_prompts=config.max_items, langid_langs=tuple(langs)
        )
        prompts = test.l2[: config.max_items]
        out["output_lang"] = output_lang.run(lm, prompts, neurons, ol_config, test.lang, progress).conditions
    questions = builtin_questions(test.lang, config.max_items) if config.qa else None
    if questions:
        qa_config = qa_analysis.QAConfig(**config.control(), max_questions=config.max_items)
        out["qa"] = qa_analysis.run(lm, questions, neurons, qa_config, progress).conditions
    return out


def builtin_questions(lang: str, max_items: int | None) -> list[QAItem] | None:
    """The built-in QA questions in `lang` (None: the set does not cover it)."""
    try:
        return load_qa(None, lang, max_items)
    except InputError:
        return None


def tn_score(scores: torch.Tensor, neurons: Sequence[Neuron], config: MethodsConfig) -> tuple[Estimate | None, int]:
    """The mean of a TN score tensor [L, m] over the `neurons` that have one (it is NaN outside the
    type's candidate layers) with its interval over them (None: none has one), and how many have one."""
    layer, neuron = torch.tensor(neurons, dtype=torch.long).unbind(-1)
    values = scores[layer, neuron].double()
    finite = values[torch.isfinite(values)].numpy()
    return (mean_estimate(finite, config.bootstrap, config.seed) if len(finite) else None), len(finite)


def massive_shares(
    lm: LoadedModel, sets: dict[str, Sequence[Neuron]], massive: dict[int, list[int]]
) -> dict[str, torch.Tensor]:
    """Per set, each neuron's share of `|u_i|^2` in its layer's massive dimensions ([n] float64, set
    order); `u_i` = `g * v_i` under a post-MLP norm of gain g, else `v_i`."""
    shares = {name: torch.zeros(len(neurons), dtype=torch.float64) for name, neurons in sets.items()}
    for layer in sorted({layer for neurons in sets.values() for layer, _ in neurons}):
        gain = lm.adapter.post_norm_gain(lm.model, layer)
        values = lm.adapter.value_vectors(lm.model, layer)
        for name, neurons in sets.items():
            rows = [k for k, (at, _) in enumerate(neurons) if at == layer]
            if rows:
                u = effective_values(values[[neurons[k][1] for k in rows]], gain).cpu()
                shares[name][rows] = vocab.dimension_share(u, massive[layer])
    return shares
