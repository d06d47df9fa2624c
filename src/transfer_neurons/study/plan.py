"""What each section of a study runs: its steps, each with the section's own settings (with the keys
it inherits, `study.config.inherited`), the steps it reads and its input files, in dependency order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transfer_neurons.choices import NeuronType
from transfer_neurons.study import steps as s
from transfer_neurons.study.config import StudyConfig
from transfer_neurons.study.data_steps import data_step
from transfer_neurons.study.steps import StepFn


@dataclass
class Step:
    """One unit of work: settings and inputs define it, `compute` writes its artifacts."""

    name: str
    compute: StepFn  # writes into the folder, returns a small summary
    settings: dict = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _splits(config: StudyConfig) -> list[str]:
    """Every language's data step."""
    return [f"data/{lang}" for lang in config.languages]


def _detected(config: StudyConfig) -> list[str]:
    """Every detection step."""
    return [f"detect/{lang}/{neuron_type}" for lang in config.languages for neuron_type in config.detect.types]


def _data(config: StudyConfig) -> Iterator[Step]:
    settings = config.data.model_dump(mode="json", exclude={"files"})
    for lang in config.languages:
        files = config.data.files.get(lang)
        paths = [p for p in (files.train, files.test, files.nonparallel) if p] if files else []
        yield Step(f"data/{lang}", data_step(lang), settings, files=paths)


def _detect(config: StudyConfig) -> Iterator[Step]:
    settings = config.detect.model_dump(mode="json", exclude={"types"})
    for lang in config.languages:
        for neuron_type in config.detect.types:
            yield Step(f"detect/{lang}/{neuron_type}", s.detect_step(lang, neuron_type), settings, [f"data/{lang}"])


def _latent(config: StudyConfig) -> Iterator[Step]:
    if config.latent.enabled:
        yield Step("latent", s.latent_step, config.latent.model_dump(mode="json"), _splits(config))


def _ablate(config: StudyConfig) -> Iterator[Step]:
    if config.ablate.enabled and NeuronType.type1 in config.detect.types:
        for lang in config.languages:
            needs = [f"data/{lang}", f"detect/{lang}/type1"]
            yield Step(f"ablate/{lang}", s.ablate_step(lang), config.ablate.model_dump(mode="json"), needs)


PAGES = {"pages", "pages_top_n"}  # the neuron pages' settings: no other step reads them


def _characterise(config: StudyConfig) -> Iterator[Step]:
    section, sets = config.characterise, _detected(config)
    if section.specificity and sets:
        yield Step(
            "specificity", s.specificity_step, section.model_dump(mode="json", exclude=PAGES), [*_splits(config), *sets]
        )
    if section.overlap and len(sets) > 1:
        settings = section.model_dump(mode="json", include={"specificity", "overlap", "top_n"})
        yield Step("overlap", s.overlap_step, settings, sets)
    if section.pages and sets:
        yield Step("neurons", s.pages_step, section.pages_settings(), [*_splits(config), *sets])


def _methods(config: StudyConfig) -> Iterator[Step]:
    if config.methods.enabled:  # the study's languages (each train split may be in the pool), not those compared
        settings = config.methods.model_dump(mode="json", exclude={"enabled"}) | {"languages": config.languages}
        for lang in config.methods_languages():
            yield Step(f"methods/{lang}", s.methods_step(lang), settings, _splits(config))


TASKS = (("qa", NeuronType.type1), ("mc", NeuronType.type1), ("output_lang", NeuronType.type2))


def _downstream(config: StudyConfig) -> Iterator[Step]:
    settings = config.downstream.model_dump(mode="json")
    for task, neuron_type in TASKS:
        if getattr(config.downstream, task) and neuron_type in config.detect.types:
            for lang in s.task_languages(task, config.languages):
                needs = [f"data/{lang}", f"detect/{lang}/{neuron_type}"]
                yield Step(f"{task}/{lang}", s.downstream_step(task, lang, neuron_type), settings, needs)


def _steer(config: StudyConfig) -> Iterator[Step]:
    if config.steer.enabled:  # the study's languages (the means are over all of them), not those steered toward
        settings = config.steer.model_dump(mode="json", exclude={"enabled"}) | {"languages": config.languages}
        for lang in config.steer_languages():
            needs = _splits(config) + [f"detect/{lang}/{neuron_type}" for neuron_type in config.steer.types]
            yield Step(f"steer/{lang}", s.steer_step(lang), settings, needs)


def _finetune(config: StudyConfig) -> Iterator[Step]:
    if config.finetune.enabled:
        settings = config.finetune.model_dump(mode="json", exclude={"enabled", "languages", "types", "baselines"})
        for lang in config.finetune_languages():
            for condition, neuron_type, baseline in config.finetune.conditions():
                needs = [f"data/{lang}", f"detect/{lang}/{neuron_type}"]
                yield Step(
                    f"finetune/{lang}/{condition}", s.finetune_step(lang, neuron_type, baseline), settings, needs
                )


SECTIONS = (_data, _detect, _latent, _ablate, _characterise, _methods, _downstream, _steer, _finetune)


def plan(config: StudyConfig) -> list[Step]:
    """The steps of a study in dependency order: each section's in turn."""
    return [step for section in SECTIONS for step in section(config)]
