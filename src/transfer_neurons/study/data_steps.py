"""The data step of a study: train / test (and non-parallel) pair files per language, from the
built-in UDHR corpus or the config's files, split with a seeded holdout where no test file is given."""

from __future__ import annotations

import random
from pathlib import Path

from transfer_neurons.analyses import latent
from transfer_neurons.artifacts import names
from transfer_neurons.artifacts.io import file_digest, write_jsonl
from transfer_neurons.artifacts.manifest import write_manifest
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.data.udhr import load_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.study.config import StudyConfig
from transfer_neurons.study.steps import StepFn, Study


def split_pairs(pairs: ParallelData, holdout: float, seed: int) -> tuple[ParallelData, ParallelData]:
    """A seeded split into (train, test) with `holdout` of the pairs in test."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    cut = len(order) - max(1, round(holdout * len(order)))
    if cut < 1:
        raise InputError(f"too few '{pairs.lang}' pairs ({len(pairs)}) to split into train and test")
    train, test = sorted(order[:cut]), sorted(order[cut:])
    return _subset(pairs, train), _subset(pairs, test)


def _subset(pairs: ParallelData, index: list[int]) -> ParallelData:
    return ParallelData(pairs.lang, [pairs.en[k] for k in index], [pairs.l2[k] for k in index])


def _rows(pairs: ParallelData) -> list[dict]:
    return [{"en": en, pairs.lang: l2} for en, l2 in zip(pairs.en, pairs.l2, strict=True)]


def file_splits(config: StudyConfig, lang: str) -> dict[str, ParallelData]:
    """The train, test and (when given) non-parallel pairs of a language with `data.files`. Without
    a test file, test is a seeded holdout of train, and a non-parallel file (one pair per train
    pair) is split the same way. InputError when the non-parallel pairs do not pair up one to one."""
    cfg, files = config.data, config.data.files[lang]
    train = read_pairs(files.train, lang, cfg.max_sentences)
    nonparallel = None if files.nonparallel is None else read_pairs(files.nonparallel, lang, cfg.max_sentences)
    where = f"data.files.{lang}.nonparallel: file '{files.nonparallel}'"
    if files.test is not None:
        test = read_pairs(files.test, lang, cfg.max_sentences)
        if nonparallel is not None:
            latent.check_nonparallel(test, nonparallel, f"{where}, beside data.files.{lang}.test,")
    else:
        if nonparallel is not None:
            latent.check_nonparallel(
                train, nonparallel, f"{where}, split like data.files.{lang}.train as there is no test file,"
            )
            nonparallel = split_pairs(nonparallel, cfg.holdout, cfg.seed)[1]
        train, test = split_pairs(train, cfg.holdout, cfg.seed)
    return {names.TRAIN: train, names.TEST: test} | ({names.NONPARALLEL: nonparallel} if nonparallel else {})


def data_step(lang: str) -> StepFn:
    """Materialise train/test (and non-parallel) pair files for `lang` from the configured source."""

    def compute(study: Study, folder: Path) -> dict:
        cfg = study.config.data
        if cfg.source == "udhr":
            loaded = load_pairs(lang)  # a code like "jpn" resolves to "ja": keep the config's name
            limit = cfg.max_sentences
            train, test = split_pairs(ParallelData(lang, loaded.en[:limit], loaded.l2[:limit]), cfg.holdout, cfg.seed)
            splits = {names.TRAIN: train, names.TEST: test}
        else:
            splits = file_splits(study.config, lang)
        for name, pairs in splits.items():
            write_jsonl(folder / name, _rows(pairs))
        sizes = {
            "source": cfg.source,
            "train": len(splits[names.TRAIN]),
            "test": len(splits[names.TEST]),
            "nonparallel": len(splits[names.NONPARALLEL]) if names.NONPARALLEL in splits else None,
        }
        write_manifest(
            folder,
            "data",
            settings=cfg.model_dump(mode="json", exclude={"files", "seed"}),
            seed=cfg.seed,
            sizes=sizes,
            files={name: file_digest(folder / name) for name in splits},
        )
        return sizes

    return compute
