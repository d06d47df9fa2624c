"""The summaries of a specificity run (docs/method.md section 6): per neuron set and labelling, the
top-n's and the random baseline's mean and median eta^2 and shares above the thresholds, each an
Estimate, and their one-line texts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transfer_neurons.metrics.uncertainty import Estimate

# JSON key of each summary -> EtaSummary field
METRICS = {
    key: key.replace(".", "_") for key in ("mean_eta2", "median_eta2", "share_eta2_gt_0.1", "share_eta2_gt_0.25")
}


@dataclass(frozen=True)
class EtaSummary:
    """One neuron list's summaries (`metrics.specificity.statistics`), each an Estimate: mean and
    median eta^2, and the shares with eta^2 above 0.1 / 0.25 and p < ALPHA. `n`: neurons (per draw
    for a random baseline, whose Estimates hold each draw's value)."""

    n: int
    mean_eta2: Estimate
    median_eta2: Estimate
    share_eta2_gt_0_1: Estimate
    share_eta2_gt_0_25: Estimate

    @property
    def shares(self) -> dict[str, Estimate]:
        """Threshold (as written in the JSON keys) -> share."""
        return {"0.1": self.share_eta2_gt_0_1, "0.25": self.share_eta2_gt_0_25}

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n} | {key: getattr(self, name).to_json() for key, name in METRICS.items()}

    @classmethod
    def of(cls, n: int, estimates: Mapping[str, Estimate]) -> EtaSummary:
        """From Estimates under their JSON keys."""
        return cls(n, **{name: estimates[key] for key, name in METRICS.items()})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EtaSummary:
        return cls.of(int(data["n"]), {key: Estimate.from_json(data[key]) for key in METRICS})


@dataclass(frozen=True)
class Comparison:
    """A set's top-n and its random baseline under one labelling; the top's mean and shares carry
    their difference from the baseline (`effect_vs_random`, `p_vs_random`)."""

    top: EtaSummary
    random: EtaSummary


@dataclass(frozen=True)
class SetSpecificity:
    """One neuron set's summaries: labelling ("target", "family" when there are two or more
    families, "language") -> top-n vs random baseline."""

    lang: str
    neuron_type: str | None  # "type" in the file
    source: str | None
    top_n: int
    labellings: dict[str, Comparison]

    def to_json(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "type": self.neuron_type,
            "source": self.source,
            "top_n": self.top_n,
            **{name: {"top": c.top.to_json(), "random": c.random.to_json()} for name, c in self.labellings.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SetSpecificity:
        labellings = {
            name: Comparison(EtaSummary.from_json(value["top"]), EtaSummary.from_json(value["random"]))
            for name, value in data.items()
            if name not in ("lang", "type", "source", "top_n")
        }
        return cls(data["lang"], data["type"], data["source"], int(data["top_n"]), labellings)


def estimate_text(e: Estimate, spec_: str) -> str:
    """'41.0% [38.2%, 44.1%]': the value and its interval (when there is one) in one format."""
    interval = "" if e.ci is None else f" [{e.ci[0]:{spec_}}, {e.ci[1]:{spec_}}]"
    return f"{e.value:{spec_}}{interval}"


def p_text(p: float | None) -> str:
    return "p n/a" if p is None else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
