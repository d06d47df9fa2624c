"""The steps a study runs (see study.plan). Each reads its inputs, calls the same analysis `run`
as the command line, and saves the Result into its folder (the same files, keys and manifest as the
command), returning a small summary for the report and the study manifest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from transfer_neurons.analyses import (
    ablate,
    compare_methods,
    detect,
    finetune,
    latent,
    mc,
    neuron_pages,
    output_lang,
    overlap,
    qa,
    specificity,
    steer,
)
from transfer_neurons.analyses.base import ControlledResult
from transfer_neurons.analyses.finetune import FinetuneBaseline
from transfer_neurons.analyses.finetune_eval import EvalSet, Measured, measure
from transfer_neurons.analyses.means import STORE_GROUP, LanguageMeans, language_means
from transfer_neurons.analyses.methods import store_groups
from transfer_neurons.analyses.pool import Sentences
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.manifest import data_inputs
from transfer_neurons.artifacts.neurons import NeuronSet, read_neurons
from transfer_neurons.choices import NeuronType
from transfer_neurons.data.examples import BUILTIN_TASK_LANGS
from transfer_neurons.data.mc import load_mc
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.data.qa import load_qa
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.study.config import StudyConfig


class Study:
    """A study config bound to a run directory; the model is loaded on first use only."""

    def __init__(self, config: StudyConfig, out: Path, progress: bool = True) -> None:
        self.config, self.out, self.progress = config, out, progress
        self._lm: LoadedModel | None = None
        self.tuned_before: dict[str, Measured] = {}  # per language: the base model measured for finetune
        self._means: LanguageMeans | None = None

    @property
    def lm(self) -> LoadedModel:
        """The model, with the run's activation store (`store`, default `RUN/store`): each distinct
        sentence the steps read without an intervention is forwarded once."""
        if self._lm is None:
            self._lm = load_model(
                self.config.model,
                self.config.device,
                self.config.dtype,
                self.progress,
                store=self.config.store or self.out / names.STORE,
                store_dtype=self.config.store_dtype,
            )
        return self._lm

    @contextmanager
    def keeping_tokens(self) -> Iterator[None]:
        """While active, the store also keeps LAPE's and AP's token reductions of what it forwards,
        when the methods section will need them, and the token sums when the steer section will
        (its means then come from the store): the detection steps forward the train sentences
        the methods' pool is made of, so the methods step forwards nothing again. (Keeping them for
        every sentence would cost more than they save: the medians select over every token.)"""
        store = self.lm.store
        methods, steering = self.config.methods.enabled, self.config.steer.enabled
        if store is None or not (methods or steering):
            yield
            return
        kept = store.groups
        groups = store_groups(self.config.methods.methods) if methods else ("last",)
        store.groups = (*groups, STORE_GROUP) if steering else groups
        try:
            yield
        finally:
            store.groups = kept

    def split_file(self, lang: str, split: str) -> Path:
        return self.out / "data" / lang / f"{split}.jsonl"

    def pairs(self, lang: str, split: str) -> ParallelData:
        """Pairs of a data step's split (train, test or nonparallel)."""
        return read_pairs(self.split_file(lang, split), lang)

    def nonparallel(self, lang: str) -> ParallelData | None:
        return self.pairs(lang, "nonparallel") if self.split_file(lang, "nonparallel").is_file() else None

    def neurons_file(self, lang: str, neuron_type: NeuronType | str) -> Path:
        return self.out / "detect" / lang / str(neuron_type) / names.NEURONS

    def neurons(self, lang: str, neuron_type: NeuronType | str) -> NeuronSet:
        return read_neurons(self.neurons_file(lang, neuron_type))

    def steering_means(self) -> LanguageMeans:
        """The per-language mean activations every steer step reads, computed once per run: English
        over the English side of every study language's train pairs, each language over its train
        sentences (from the store where the detection steps kept their token sums)."""
        if self._means is None:
            train = {code: self.pairs(code, "train") for code in self.config.languages}
            english = list(dict.fromkeys(s for pairs in train.values() for s in pairs.en))
            sentences = {"en": english, **{code: pairs.l2 for code, pairs in train.items()}}
            self._means = language_means(self.lm, sentences, self.config.batch_size, self.progress)
        return self._means

    def inputs(self, **paths: Path | None) -> dict:
        """The manifest's inputs of a step: the model and the files it read, with their sha256."""
        return {"model": self.config.model, **data_inputs(**paths)}


StepFn = Callable[[Study, Path], dict]


def detect_step(lang: str, neuron_type: NeuronType) -> StepFn:
    """Type-1 or Type-2 detection on the train split."""

    def compute(study: Study, folder: Path) -> dict:
        pairs = study.pairs(lang, "train")
        with study.keeping_tokens():
            result = detect.run(study.lm, pairs, neuron_type, study.config.detect.analysis(), study.progress)
        result.save(folder, study.inputs(data=study.split_file(lang, "train")))
        return result.headline()

    return compute


def latent_step(study: Study, folder: Path) -> dict:
    """Latent-space analyses over every language's test split."""
    langs = study.config.languages
    nonparallel = {lang: np for lang in langs if (np := study.nonparallel(lang)) is not None}
    datasets = [study.pairs(lang, "test") for lang in langs]
    result = latent.run(study.lm, datasets, nonparallel, study.config.latent.analysis(), study.progress)
    files = {f"data_{lang}": study.split_file(lang, "test") for lang in langs}
    files |= {f"nonparallel_{lang}": study.split_file(lang, "nonparallel") for lang in nonparallel}
    result.save(folder, study.inputs(**files))
    return result.headline()


def ablate_step(lang: str) -> StepFn:
    """Deactivate the language's top Type-1 neurons vs a random baseline on its test split."""

    def compute(study: Study, folder: Path) -> dict:
        neurons = study.neurons(lang, NeuronType.type1)
        result = ablate.run(
            study.lm,
            neurons,
            study.pairs(lang, "test"),
            study.nonparallel(lang),
            study.config.ablate.analysis(),
            study.progress,
        )
        result.save(
            folder,
            study.inputs(
                neurons=study.neurons_file(lang, NeuronType.type1),
                data=study.split_file(lang, "test"),
                nonparallel=study.split_file(lang, "nonparallel") if result.nonparallel == "file" else None,
            ),
        )
        headline = result.headline()
        return {"top_k": headline["top_k"], **headline["summary"]}

    return compute


def _detected(study: Study) -> dict[str, Path]:
    """`<lang>-<type>` -> neurons.json of every detection step of the study."""
    cfg = study.config
    return {
        f"{lang}-{neuron_type}": study.neurons_file(lang, neuron_type)
        for lang in cfg.languages
        for neuron_type in cfg.detect.types
    }


def specificity_step(study: Study, folder: Path) -> dict:
    """eta^2 of each detected set's top-n vs a random baseline, over the test-split sentences."""
    cfg = study.config
    sentences = {"en": study.pairs(cfg.languages[0], "test").en}
    sentences |= {lang: study.pairs(lang, "test").l2 for lang in cfg.languages}
    config = cfg.characterise.specificity_config()
    sets = {name: read_neurons(path) for name, path in _detected(study).items()}
    result = specificity.run(study.lm, sentences, sets, config, study.progress)
    result.save(folder, study.inputs(**{f"neurons_{name}": path for name, path in _detected(study).items()}))
    return result.headline()


def overlap_step(study: Study, folder: Path) -> dict:
    """Jaccard overlap between every pair of detected sets, and their layer distributions."""
    sets = [read_neurons(path) for path in _detected(study).values()]
    shape = detect.Detection.load(next(iter(_detected(study).values())).parent).scores.shape
    result = overlap.run(sets, shape[0], shape[1], overlap.OverlapConfig(top_n=study.config.characterise.top_n))
    result.save(folder, study.inputs(**{f"set{k}": path for k, path in enumerate(_detected(study).values())}))
    return result.headline()


def pages_step(study: Study, folder: Path) -> dict:
    """Neuron pages for the top of every detected set, from one pass over the test sentences."""
    cfg = study.config
    sets = specificity.name_sets([read_neurons(path) for path in _detected(study).values()])
    test = {lang: study.pairs(lang, "test") for lang in cfg.languages}
    sentences = {lang: pairs.l2 for lang, pairs in test.items()}
    sentences["en"] = list(dict.fromkeys(s for pairs in test.values() for s in pairs.en))
    config = neuron_pages.NeuronPagesConfig(**cfg.characterise.pages_settings())
    result = neuron_pages.run(study.lm, sets, sentences, config, progress=study.progress)
    files = {f"neurons_{name}": path for name, path in _detected(study).items()}
    files |= {f"data_{lang}": study.split_file(lang, "test") for lang in cfg.languages}
    result.save(folder, study.inputs(**files))
    return result.headline()


def methods_step(lang: str) -> StepFn:
    """The methods compared on `lang`'s train / test pairs; the pool: the train sentences of the other
    study languages (or of `methods.reference`)."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config
        others = [code for code in cfg.methods.reference or cfg.languages if code != lang]
        reference = [
            Sentences(code, study.pairs(code, "train").l2, str(study.split_file(code, "train"))) for code in others
        ]
        config = cfg.methods.analysis()
        train = study.pairs(lang, "train")
        result = compare_methods.run(
            study.lm,
            train,
            study.pairs(lang, "test"),
            study.nonparallel(lang),
            reference,
            config,
            str(study.split_file(lang, "train")),
            study.progress,
        )
        files = {f"train_{code}": study.split_file(code, "train") for code in cfg.languages}
        result.save(folder, study.inputs(**files, test=study.split_file(lang, "test")))
        return result.headline()

    return compute


def finetune_step(lang: str, neuron_type: NeuronType, baseline: FinetuneBaseline | None) -> StepFn:
    """Train the top-k `neuron_type` neurons of `lang` (or `baseline` of them) on the L2 side of its train
    split and measure before / after on its test pairs, as the finetune command does. The training
    runs on a fresh copy of the model (no store, no delta): the study's model is never changed. The
    base model is measured once per language, for all its conditions."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config
        config = cfg.finetune.analysis(baseline)
        test = study.pairs(lang, "test")
        questions = compare_methods.builtin_questions(lang, None) if config.qa else None
        data = EvalSet(lang, test.l2, test, questions)
        lm = load_model(cfg.model, cfg.device, cfg.dtype, study.progress)
        neurons = study.neurons(lang, neuron_type)
        finetune.check_inputs(lm, neurons, config, data)
        if lang not in study.tuned_before:  # the same base model and data for every condition
            study.tuned_before[lang] = measure(lm, data, config, study.progress)
        result = finetune.run(
            lm,
            neurons,
            study.pairs(lang, "train").l2,
            data,
            config,
            progress=study.progress,
            before=study.tuned_before[lang],
        )
        files = {"train": study.split_file(lang, "train"), "eval": study.split_file(lang, "test")}
        result.save(folder, study.inputs(neurons=study.neurons_file(lang, neuron_type), **files))
        return result.headline()

    return compute


TASK_LANGS = {"qa": BUILTIN_TASK_LANGS, "mc": BUILTIN_TASK_LANGS}


def task_languages(task: str, languages: list[str]) -> list[str]:
    """The study's languages a downstream task has built-in data for (output_lang: all)."""
    return [lang for lang in languages if task not in TASK_LANGS or lang in TASK_LANGS[task]]


def downstream_step(task: str, lang: str, neuron_type: NeuronType) -> StepFn:
    """QA, multiple choice or output language of `lang`: normal, top-k `neuron_type` neurons deactivated,
    and a random baseline (the same analyses as the qa, mc and output-lang commands)."""

    def compute(study: Study, folder: Path) -> dict:
        cfg, down, lm = study.config, study.config.downstream, study.lm
        neurons = study.neurons(lang, neuron_type)
        shared = {**down.control(), "batch_size": cfg.batch_size}
        inputs = study.inputs(neurons=study.neurons_file(lang, neuron_type))
        result: ControlledResult
        if task == "qa":
            questions = load_qa(None, lang, down.max_questions)
            result = qa.run(lm, questions, neurons, qa.QAConfig(**shared, max_questions=down.max_questions))
        elif task == "mc":
            choices = load_mc(None, lang, down.max_questions)
            result = mc.run(lm, choices, neurons, mc.MCConfig(**shared, max_questions=down.max_questions))
        else:
            prompts = study.pairs(lang, "test").l2[: down.max_questions]
            config = output_lang.OutputLangConfig(
                **shared, max_prompts=down.max_questions, langid_langs=tuple(sorted({"en", lang, *cfg.languages}))
            )
            result = output_lang.run(lm, prompts, neurons, config, lang)
            inputs |= study.inputs(data=study.split_file(lang, "test"))
        result.save(folder, inputs)
        headline = result.headline()
        return {"top_k": headline["top_k"], "neurons": str(neuron_type), "conditions": headline["conditions"]}

    return compute


def steer_step(lang: str) -> StepFn:
    """English test-split prompts steered toward `lang` by each listed type's set, against random
    sets; the means (`Study.steering_means`) from every study language's train sentences and their
    English side, the same for every steered language."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config
        means = study.steering_means()
        prompts = study.pairs(lang, "test").en[: cfg.steer.max_prompts]
        sets = [study.neurons(lang, neuron_type) for neuron_type in cfg.steer.types]
        result = steer.run(study.lm, prompts, sets, means, cfg.steer.analysis(), "en", lang, progress=study.progress)
        files = {f"train_{code}": study.split_file(code, "train") for code in cfg.languages}
        result.save(folder, study.inputs(**files, test=study.split_file(lang, "test")))
        return result.headline()

    return compute
