"""Every result keeps its files through a round trip: save, load, save again gives byte-identical
files (the same JSON keys and numbers, the same tensors, the same figures)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from transfer_neurons.analyses.logit_lens import LayerCurve, LogitLensResult
from transfer_neurons.analyses.mc import MCResult, MCScores
from transfer_neurons.analyses.means import LanguageMeans
from transfer_neurons.analyses.output_lang import OutputLangResult
from transfer_neurons.analyses.overlap import OverlapResult
from transfer_neurons.analyses.qa import QAResult, QAScores
from transfer_neurons.analyses.steer import Cell, SteerResult
from transfer_neurons.analyses.sweep import SweepResult
from transfer_neurons.artifacts.io import file_digest
from transfer_neurons.artifacts.names import MANIFEST
from transfer_neurons.artifacts.result import Result
from transfer_neurons.hooks.interventions import Intervention, RandomBaseline
from transfer_neurons.metrics.uncertainty import Estimate

EFFECT = Estimate(-0.1, (-0.2, 0.0))
DEACTIVATED = Estimate(0.4, (0.3, 0.5), p_vs_random=0.02, effect_vs_random=EFFECT)
RANDOM = Estimate(0.5, (0.4, 0.6), seeds=(1, 2), per_seed=(0.45, 0.55))
ESTIMATES = {"normal": Estimate(0.6, (0.5, 0.7)), "deactivated": DEACTIVATED, "random": RANDOM}


def controlled() -> dict:
    """The shared fields of a controlled result that compared a neuron set with a random baseline."""
    deactivated = Intervention.of([(0, 1), (1, 2)], 0.0, "prompt")
    draws = (Intervention.of([(0, 3), (1, 0)], 0.0, "prompt"), Intervention.of([(0, 0), (1, 3)], 0.0, "prompt"))
    return {
        "model": "tiny",
        "lang": "ja",
        "seed": 3,
        "deactivated": deactivated,
        "random": RandomBaseline(draws, (1, 2)),
        "settings": {"top_k": 2, "positions": "prompt", "bootstrap": 10},
        "timings": {"total": 1.5},
    }


def overlap() -> OverlapResult:
    return OverlapResult(
        model="tiny",
        top_n=2,
        labels=["a", "b"],
        jaccard=[[1.0, 0.25], [0.25, 1]],
        chance_jaccard=None,
        layer_counts={"a": [1, 1], "b": [2, 0]},
        types=["type1", None],
    )


def qa() -> QAResult:
    scores = {name: QAScores(2, e, Estimate(0.5)) for name, e in ESTIMATES.items()}
    rows = [{"condition": name, "id": "q1", "f1": 0.5, "em": 0} for name in scores]
    return QAResult(**controlled(), conditions=scores, rows=rows)


def mc() -> MCResult:
    scores = {name: MCScores(e, 4, (0.1, 0.9), name == "random", {"A": 3, "B": 1}) for name, e in ESTIMATES.items()}
    rows = [{"condition": name, "id": "q1", "correct": True} for name in scores]
    return MCResult(**controlled(), chance=0.25, conditions=scores, rows=rows)


def output_lang() -> OutputLangResult:
    conditions = {name: {"ja": e, "en": Estimate(0.1, None)} for name, e in ESTIMATES.items()}
    rows = [{"condition": name, "output": "x", "lang": "ja"} for name in conditions]
    return OutputLangResult(**controlled(), conditions=conditions, rows=rows)


def logit_lens() -> LogitLensResult:
    curve = LayerCurve([0.1, 0.5], [0.0, 0.4], [0.2, 0.6])
    conditions = {name: {"ja": curve, "en": LayerCurve([0.3, 0.2])} for name in ESTIMATES}
    rows = [{"condition": name, "ja": [0.1, 0.5]} for name in conditions]
    return LogitLensResult(**controlled(), tokens=5, conditions=conditions, last_layer={"normal": ESTIMATES}, rows=rows)


def sweep() -> SweepResult:
    shares = {"ja": 0.5, "en": 0.25, "none": 0.25}
    cells = {(0.0, 4): shares, (2.0, 4): {"ja": 1.0, "en": 0.0, "none": 0.0}}
    rows = [{"condition": "normal", "output": "x", "lang": "ja", "factor": None, "top_k": None}]
    settings = {"positions": "all", "n_prompts": 1}
    neurons = {"lang": "ja", "type": "type2", "source": None}
    return SweepResult(
        model="tiny",
        lang="ja",
        factors=[0.0, 2.0],
        top_k=[4],
        normal=shares,
        cells=cells,
        rows=rows,
        neurons=neurons,
        settings=settings,
        timings={"total": 0.5},
    )


def steer() -> SteerResult:
    metrics = {"target": DEACTIVATED, "loglik": Estimate(-2.0, (-2.5, -1.5))}
    key = {"set": "ja-type2", "method": "add", "alpha": 1.0, "deactivate_source": False}
    cell = Cell(key, metrics, {"target": RANDOM, "loglik": Estimate(-2.1)})
    means = LanguageMeans(("en", "ja"), torch.ones(2, 2, 3), (4, 4), (20, 18))
    return SteerResult(
        model="tiny",
        source="en",
        target="ja",
        seed=3,
        normal={"dev": metrics, "test": metrics},
        grid=[cell],
        chosen=[cell],
        rows=[{"set": "ja-type2", "output": "x"}],
        means=means,
        settings={"sets": ["ja-type2"], "n_prompts": {"dev": 1, "test": 1}},
        timings={"total": 1.0},
    )


def digests(out: Path) -> dict[str, str]:
    return {path.name: file_digest(path) for path in sorted(out.iterdir())}


@pytest.mark.parametrize("make", [overlap, qa, mc, output_lang, logit_lens, sweep, steer])
def test_save_load_save_keeps_every_file(make: Callable[[], Result], tmp_path: Path) -> None:
    result = make()
    first = result.save(tmp_path / "first")
    loaded = type(result).load(first)
    assert loaded.manifest_fields() == result.manifest_fields()
    assert loaded.to_json() == result.to_json()
    second = loaded.save(tmp_path / "second")
    assert type(result).load(second).to_json() == result.to_json()
    files = digests(first)
    assert MANIFEST in files
    assert {name: d for name, d in files.items() if name != MANIFEST} == {
        name: d for name, d in digests(second).items() if name != MANIFEST
    }
