"""`transfer-neurons run study.yaml`: a whole study as resumable steps in one run directory.

Each step writes its artifacts into `RUN/<step name>/` (atomically) and then `step.json`, which
holds the step's key and the sha256 of every artifact. The key hashes the step's settings, its
external input files, the keys of the steps it reads, and the package's code, so a step is
reused only when all of those are unchanged and its artifacts are intact; anything else
(a killed run, a deleted or edited file, `--force`) recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transfer_neurons.artifacts.io import file_digest, read_json, write_json
from transfer_neurons.artifacts.manifest import versions, write_manifest
from transfer_neurons.data.pairs import ParallelData, read_pairs
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.study.config import StudyConfig

STEP_FILE = "step.json"


@dataclass
class Step:
    """One unit of work: settings and inputs define it, `compute` writes its artifacts."""

    name: str
    compute: Callable[[Study, Path], dict]  # writes into the folder, returns a small summary
    settings: dict = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Study:
    """A study config bound to a run directory; the model is loaded on first use only."""

    def __init__(self, config: StudyConfig, out: Path, progress: bool = True) -> None:
        self.config, self.out, self.progress = config, out, progress
        self._lm: LoadedModel | None = None

    @property
    def lm(self) -> LoadedModel:
        if self._lm is None:
            self._lm = load_model(self.config.model, self.config.device, self.config.dtype, self.progress)
        return self._lm

    def pairs(self, lang: str, split: str) -> ParallelData:
        """Pairs of a data step's split (train, test or nonparallel)."""
        return read_pairs(self.out / "data" / lang / f"{split}.jsonl", lang)

    def has_split(self, lang: str, split: str) -> bool:
        return (self.out / "data" / lang / f"{split}.jsonl").is_file()


def code_version() -> str:
    """sha256 over the package's source files: any code change invalidates cached steps."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def plan(config: StudyConfig) -> list[Step]:
    """The steps of a study in dependency order."""
    from transfer_neurons.study import steps as s

    steps: list[Step] = []
    data_settings = config.data.model_dump(mode="json", exclude={"files"})
    for lang in config.languages:
        files = config.data.files.get(lang)
        paths = [p for p in (files.train, files.test, files.nonparallel) if p] if files else []
        steps.append(Step(f"data/{lang}", s.data_step(lang), {**data_settings, "seed": config.seed}, files=paths))
    for lang in config.languages:
        for kind in config.detect.types:
            settings = {**config.detect.model_dump(mode="json", exclude={"types"}), "batch_size": config.batch_size}
            steps.append(Step(f"detect/{lang}/{kind}", s.detect_step(lang, kind), settings, [f"data/{lang}"]))
    if config.latent.enabled:
        settings = {**config.latent.model_dump(mode="json"), "seed": config.seed}
        steps.append(Step("latent", s.latent_step, settings, [f"data/{lang}" for lang in config.languages]))
    if config.ablate.enabled and "type1" in config.detect.types:
        for lang in config.languages:
            settings = {**config.ablate.model_dump(mode="json"), "k": config.latent.k, "seed": config.seed}
            needs = [f"data/{lang}", f"detect/{lang}/type1"]
            steps.append(Step(f"ablate/{lang}", s.ablate_step(lang), settings, needs))
    detected = [f"detect/{lang}/{kind}" for lang in config.languages for kind in config.detect.types]
    data_steps = [f"data/{lang}" for lang in config.languages]
    if config.characterise.specificity and detected:
        settings = {**config.characterise.model_dump(mode="json"), "seed": config.seed,
                    "baseline": config.ablate.baseline, "batch_size": config.batch_size}  # fmt: skip
        steps.append(Step("specificity", s.specificity_step, settings, data_steps + detected))
    if config.characterise.overlap and len(detected) > 1:
        steps.append(Step("overlap", s.overlap_step, config.characterise.model_dump(mode="json"), detected))
    down = config.downstream
    settings = {**down.model_dump(mode="json"), "seed": config.seed, "baseline": config.ablate.baseline}
    for task, enabled, kind in (("qa", down.qa, "type1"), ("mc", down.mc, "type1"),
                                ("output_lang", down.output_lang, "type2")):  # fmt: skip
        if not enabled or kind not in config.detect.types:
            continue
        for lang in s.task_languages(task, config.languages):
            needs = [f"data/{lang}", f"detect/{lang}/{kind}"]
            steps.append(Step(f"{task}/{lang}", s.downstream_step(task, lang, kind), settings, needs))
    return steps


def step_key(step: Step, keys: dict[str, str], code: str) -> str:
    payload = {
        "name": step.name,
        "settings": step.settings,
        "needs": {name: keys[name] for name in step.needs},
        "files": {str(p): file_digest(p) for p in step.files},
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def is_done(folder: Path, key: str) -> bool:
    """True when `folder` holds a finished step of this key whose artifacts are all intact."""
    marker = folder / STEP_FILE
    if not marker.is_file():
        return False
    try:
        record = read_json(marker)
    except ValueError:
        return False
    if record.get("key") != key:
        return False
    return all((folder / name).is_file() and file_digest(folder / name) == digest
               for name, digest in record.get("artifacts", {}).items())  # fmt: skip


def run_study(config: StudyConfig, out: Path, force: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Run (or resume) every step of `config` in `out`, then write manifest.json and report.html."""
    from transfer_neurons.artifacts.report import write_report

    check_sources(config)
    study = Study(config, out, progress)
    code = code_version()
    keys: dict[str, str] = {}
    records: dict[str, dict] = {}
    steps = plan(config)
    started = time.perf_counter()
    for number, step in enumerate(steps, 1):
        folder = out / step.name
        keys[step.name] = key = step_key(step, keys, code)
        if not force and is_done(folder, key):
            records[step.name] = {**read_json(folder / STEP_FILE), "status": "reused"}
            log(f"[{number}/{len(steps)}] {step.name}: reused")
            continue
        log(f"[{number}/{len(steps)}] {step.name} ...")
        shutil.rmtree(folder, ignore_errors=True)  # no stale artifact survives a recomputation
        folder.mkdir(parents=True)
        start = time.perf_counter()
        summary = step.compute(study, folder)
        seconds = time.perf_counter() - start
        artifacts = {p.name: file_digest(p) for p in sorted(folder.iterdir())
                     if p.is_file() and p.name != STEP_FILE and not p.name.startswith(".")}  # fmt: skip
        record = {"key": key, "seconds": seconds, "artifacts": artifacts, "summary": summary}
        write_json(folder / STEP_FILE, record)
        records[step.name] = {**record, "status": "computed"}
        log(f"[{number}/{len(steps)}] {step.name}: done in {seconds:.1f} s")
    write_manifest(
        out,
        "run",
        model=config.model,
        config=config.model_dump(mode="json"),
        seed=config.seed,
        code=code,
        inputs={str(p): file_digest(p) for step in steps for p in step.files},
        steps={name: {k: r[k] for k in ("status", "seconds", "key", "summary")} for name, r in records.items()},
        timings_s={"total": time.perf_counter() - started},
    )
    write_report(out, config, records, versions())
    return out / "report.html"


def check_sources(config: StudyConfig) -> None:
    """Raise InputError for a language the configured corpus lacks, before any step runs."""
    if config.data.source != "udhr":
        return
    from transfer_neurons.data import udhr

    for number, code in enumerate(config.languages):
        try:
            udhr.resolve(code)
        except InputError as exc:
            raise InputError(f"languages.{number}: '{code}' is not in the UDHR corpus; "
                             "list the codes with: transfer-neurons data udhr --list") from exc  # fmt: skip


def split_pairs(pairs: ParallelData, holdout: float, seed: int) -> tuple[ParallelData, ParallelData]:
    """A seeded split into (train, test) with `holdout` of the pairs in test."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    cut = len(order) - max(1, round(holdout * len(order)))
    if cut < 1:
        raise InputError(f"too few '{pairs.lang}' pairs ({len(pairs)}) to split into train and test")
    parts = sorted(order[:cut]), sorted(order[cut:])
    return tuple(  # type: ignore[return-value]
        ParallelData(pairs.lang, [pairs.en[k] for k in idx], [pairs.l2[k] for k in idx]) for idx in parts
    )
