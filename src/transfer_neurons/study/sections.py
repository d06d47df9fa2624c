"""The sections of a study config (study.config.StudyConfig): each analysis's own config with the
study's switches (`enabled`, `types`, `languages`, ...); strict, like the whole config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from transfer_neurons.analyses.ablate import AblateConfig
from transfer_neurons.analyses.base import Config, ControlConfig, baseline_field, bootstrap_field, seed_field
from transfer_neurons.analyses.compare_methods import MethodsConfig
from transfer_neurons.analyses.detect import DetectConfig
from transfer_neurons.analyses.finetune import FinetuneBaseline, FinetuneConfig
from transfer_neurons.analyses.latent import LatentConfig
from transfer_neurons.analyses.specificity import SpecificityConfig
from transfer_neurons.analyses.steer import SteerConfig
from transfer_neurons.choices import Baseline, Method, NeuronType


class Section(Config):
    """Strict: unknown keys are errors."""


class LanguageFiles(Section):
    train: Path = Field(description="Parallel en-L2 pairs for detection (JSONL or TSV).")
    test: Path | None = Field(None, description="Pairs for the latent analyses and ablations; default: a holdout.")
    nonparallel: Path | None = Field(
        None,
        description="Non-parallel pairs, one per test pair (without a test file: one per train pair, split like "
        "them); default: the L2 side shifted by one.",
    )


class DataConfig(Section):
    source: Literal["udhr", "files"] = Field(
        "udhr", description="udhr: the built-in Universal Declaration of Human Rights corpus; files: `files`."
    )
    files: dict[str, LanguageFiles] = Field(default_factory=dict, description="Per L2 code, when source=files.")
    max_sentences: int | None = Field(None, ge=2, description="Use at most this many pairs per language.")
    holdout: float = Field(
        0.5, gt=0, lt=1, description="Share of the pairs kept for analyses when a language has no test file."
    )
    seed: int = seed_field("Seed of the holdout split.")


C = TypeVar("C", bound=Config)


def _only(section: Config, config: type[C]) -> C:
    """The analysis config inside a study section (without the study's own switches)."""
    return config.model_validate(section.model_dump(include=set(config.model_fields)))


class DetectSection(DetectConfig):
    """The `detect` analysis's config, for every listed type and language."""

    types: list[NeuronType] = Field([NeuronType.type1, NeuronType.type2], description="Neuron types to detect.")

    def analysis(self) -> DetectConfig:
        return _only(self, DetectConfig)


class LatentSection(LatentConfig):
    """The `latent` analysis's config over every language's test split."""

    enabled: bool = Field(True, description="Run the latent-space analyses (mutual kNN, similarity, PCA).")

    def analysis(self) -> LatentConfig:
        return _only(self, LatentConfig)


class AblateSection(AblateConfig):
    """The `ablate` analysis's config (Type-1 neurons; k and clamp default to latent's)."""

    enabled: bool = Field(True, description="Deactivate the top Type-1 neurons and a random baseline.")

    def analysis(self) -> AblateConfig:
        return _only(self, AblateConfig)


class CharacteriseConfig(Section):
    specificity: bool = Field(True, description="eta^2 / ANOVA language specificity of every detected set.")
    overlap: bool = Field(True, description="Jaccard overlap of the detected sets and their layer distribution.")
    top_n: int = Field(1000, ge=1, description="Top neurons per set (at most detect.top_n).")
    pages: bool = Field(True, description="Neuron pages (index.html and one card per neuron) for every detected set.")
    pages_top_n: int = Field(20, ge=1, description="Neurons per set with a page (at most detect.top_n).")
    baseline: Baseline = baseline_field()
    seed: int = seed_field("Seed of the random baselines and of the bootstrap.")
    baseline_seeds: int = Field(5, ge=1, description="Random baseline draws per set.")
    bootstrap: int = bootstrap_field()
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")

    def specificity_config(self) -> SpecificityConfig:
        return _only(self, SpecificityConfig)

    def pages_settings(self) -> dict[str, Any]:
        """The neuron pages' settings: a page for each of the top pages_top_n neurons of every set."""
        return {"top_n": self.pages_top_n, **self.model_dump(include={"bootstrap", "seed", "batch_size"})}


class DownstreamConfig(ControlConfig):
    """The controlled experiment (top-k deactivated vs random) of each downstream task."""

    qa: bool = Field(True, description="Built-in QA (token F1) for the languages it covers (en ja ko nl it).")
    mc: bool = Field(True, description="Built-in multiple choice (accuracy) for the languages it covers.")
    output_lang: bool = Field(True, description="Language of continuations of test-split L2 sentences.")
    top_k: int = Field(100, ge=1, description="Neurons deactivated (Type-1 for QA/MC, Type-2 for output language).")
    max_questions: int = Field(30, ge=1, description="Questions (or prompts) per language and condition.")
    baseline_seeds: int = Field(5, ge=1, description="Random baseline draws, each on every question or prompt.")

    def control(self) -> dict[str, Any]:
        """The keys every task's config shares: top_k, baseline, seed, baseline_seeds and bootstrap."""
        return self.model_dump(include=set(ControlConfig.model_fields))


class MethodsSection(MethodsConfig):
    """`compare-methods` per language: each method's top-k under the same tests (top_k, k, clamp,
    baseline, seeds, bootstrap and batch_size default to ablate's); the reference pool is every other
    study language's train sentences."""

    enabled: bool = Field(False, description="Compare the methods' neurons (docs/method.md section 3).")
    methods: list[Method] = Field(default_factory=lambda: list(Method), min_length=1, description="Methods compared.")
    languages: list[str] | None = Field(None, description="Languages compared; default: the first two study languages.")
    reference: list[str] | None = Field(
        None, description="Study languages whose train sentences form the reference pool; default: all the others."
    )
    output_lang: bool = Field(False, description="Also the output language under each method's deactivation.")
    qa: bool = Field(False, description="Also QA F1 where the built-in set covers the language.")
    max_items: int = Field(16, ge=1, description="Prompts / questions of the downstream parts.")

    def analysis(self) -> MethodsConfig:
        return _only(self, MethodsConfig)


class FinetuneSection(FinetuneConfig):
    """The `finetune` analysis's config: per language, each listed type's top-k neurons trained on the
    train split's L2 side, then each baseline of that set, measured on the test split."""

    enabled: bool = Field(
        False, description="Fine-tune only the transfer neurons, against baselines (docs/method.md section 12)."
    )
    languages: list[str] | None = Field(None, description="Languages fine-tuned; default: the first study language.")
    types: list[NeuronType] = Field([NeuronType.type1], min_length=1, description="Neuron sets trained, each alone.")
    baselines: list[FinetuneBaseline] = Field(
        [FinetuneBaseline.random, FinetuneBaseline.lora],
        description="Baselines trained beside each set: random, lora, full (an empty list: none).",
    )
    baseline: FinetuneBaseline | None = Field(None, exclude=True, description="Not used: list them in `baselines`.")
    save_every: int = Field(0, exclude=True, description="Not used: a study step is recomputed whole.")

    @model_validator(mode="after")
    def _command_only_keys(self) -> FinetuneSection:
        if "baseline" in self.model_fields_set:
            raise ValueError("list the baselines in `finetune.baselines`, not `finetune.baseline`")
        if "save_every" in self.model_fields_set:
            raise ValueError("`finetune.save_every` is the command's: a study step is recomputed whole, no checkpoints")
        return self

    def conditions(self) -> list[tuple[str, NeuronType, FinetuneBaseline | None]]:
        """Each trained condition in order, as (folder name, type, baseline): per type the set itself
        (`<type>`), then each baseline of it (`<type>-<baseline>`)."""
        return [
            (str(neuron_type) if baseline is None else f"{neuron_type}-{baseline}", neuron_type, baseline)
            for neuron_type in self.types
            for baseline in [None, *self.baselines]
        ]

    def analysis(self, baseline: FinetuneBaseline | None) -> FinetuneConfig:
        """The command's config for the set itself (None) or one of its baselines, without checkpoints."""
        return _only(self, FinetuneConfig).model_copy(update={"baseline": baseline, "save_every": 0})


class SteerSection(SteerConfig):
    """`steer` per language: English test-split prompts steered toward the language by each listed
    type's set against random sets; the values from every study language's train sentences (and
    their English side), read from the store the detection steps filled (docs/method.md section 4)."""

    enabled: bool = Field(False, description="Steer the output language toward each listed language.")
    languages: list[str] | None = Field(None, description="Target languages; default: the first study language.")
    types: list[NeuronType] = Field(
        [NeuronType.type2, NeuronType.type1], min_length=1, description="Neuron sets steered, each against random."
    )
    max_prompts: int | None = Field(30, ge=2, description="English test-split prompts (dev and test together).")

    def analysis(self) -> SteerConfig:
        return _only(self, SteerConfig)
