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
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from transfer_neurons.artifacts.io import WRITE_ERRORS, disk_error, file_digest, locked, read_json, write_json
from transfer_neurons.artifacts.manifest import versions, write_manifest
from transfer_neurons.artifacts.names import MANIFEST, REPORT, STEP
from transfer_neurons.artifacts.templates import PAGES_OF_STUDY
from transfer_neurons.data import udhr
from transfer_neurons.errors import InputError
from transfer_neurons.model.loading import check_model
from transfer_neurons.study.compare import read_models, write_comparison
from transfer_neurons.study.config import StudyConfig, model_slugs
from transfer_neurons.study.data_steps import file_splits
from transfer_neurons.study.plan import Step, plan
from transfer_neurons.study.report import write_report
from transfer_neurons.study.steps import Study

STEP_FILE = STEP


PACKAGE = Path(__file__).resolve().parent.parent
# help texts, the report, its findings, the run tables and the comparison of models change no step's results
NOT_RESULTS = (
    "cli",
    "study/report.py",
    "study/findings.py",
    "study/tables.py",
    "study/compare",
    *(f"templates/{page}" for page in PAGES_OF_STUDY),
)


def result_sources() -> list[Path]:
    """The source files that compute results: the code and the templates of the pages a step writes
    (everything but the command line and the report)."""
    sources = [*PACKAGE.rglob("*.py"), *(PACKAGE / "templates").iterdir()]
    return sorted(path for path in sources if not path.relative_to(PACKAGE).as_posix().startswith(NOT_RESULTS))


def code_version() -> str:
    """sha256 over the source files that compute results: a change there invalidates cached steps;
    a change of the command line or the report template does not (the report is always re-rendered)."""
    digest = hashlib.sha256()
    for path in result_sources():
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
    return all(
        (folder / name).is_file() and file_digest(folder / name) == digest
        for name, digest in record.get("artifacts", {}).items()
    )


def run_study(
    config: StudyConfig, out: Path, force: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> Path:
    """Run (or resume) every step of `config` in `out`, then write manifest.json and report.html.

    Several models: each model's study runs in `out/<slug>/` (`study.config.model_slugs`) with its own
    manifest and report, then the comparison (`study.compare`) is written into `out`: models.json,
    figures, report.html and manifest.json. Every input of every model is checked before any step
    runs; `out` is locked for the run (InputError when another run holds it)."""
    check_inputs(config, progress)
    with locked(out):
        try:
            if config.models is None:
                return _run_steps(config, out, force, progress, log)
            return _run_models(config, out, force, progress, log)
        except OSError as exc:  # a full disk: one line; the finished steps stay for the rerun
            if exc.errno not in WRITE_ERRORS:
                raise
            raise disk_error(exc, out, "the finished steps are kept", "rerun into the same folder to resume") from exc


def _run_models(config: StudyConfig, out: Path, force: bool, progress: bool, log: Callable[[str], None]) -> Path:
    """The body of `run_study` for several models, under its lock."""
    for stale in (MANIFEST, REPORT):  # until every model is done, the folder must not look complete
        (out / stale).unlink(missing_ok=True)
    started = time.perf_counter()
    studies = dict(zip(model_slugs(config.model_list()), map(config.for_model, config.model_list()), strict=True))
    for number, (slug, study) in enumerate(studies.items(), 1):
        log(f"model {number}/{len(studies)}: {study.model} in {out / slug}")
        with locked(out / slug) as folder:
            _run_steps(study, folder, force, progress, log)
    files = write_comparison(read_models([out / slug for slug in studies], out), out)
    write_manifest(
        out,
        "run",
        models=[{"name": study.model, "run": slug} for slug, study in studies.items()],
        config=config.model_dump(mode="json"),
        seed=config.seed,
        code=code_version(),
        files={name: file_digest(out / name) for name in files},
        timings_s={"total": time.perf_counter() - started},
    )
    return out / REPORT


def _run_steps(config: StudyConfig, out: Path, force: bool, progress: bool, log: Callable[[str], None]) -> Path:
    """The body of `run_study`, under its lock."""
    for stale in (MANIFEST, REPORT):  # until this run ends, the folder must not look complete
        (out / stale).unlink(missing_ok=True)
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
        artifacts = {
            p.name: file_digest(p)
            for p in sorted(folder.iterdir())
            if p.is_file() and p.name != STEP_FILE and not p.name.startswith(".")
        }
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
    return out / REPORT


def check_inputs(config: StudyConfig, progress: bool = True) -> None:
    """Raise InputError for what would make a step fail, before any step runs: a language the corpus
    lacks, a data file that cannot be read or whose non-parallel pairs do not pair up, a model (any
    of `models`) that cannot be found (a .gguf file is converted here, once)."""
    check_sources(config)
    if config.data.source == "files":
        for lang in config.languages:
            file_splits(config, lang)
    for number, model in enumerate(config.model_list()):
        try:
            check_model(model, progress)
        except InputError as exc:
            raise InputError(f"{'model' if config.models is None else f'models.{number}'}: {exc}") from exc


def check_sources(config: StudyConfig) -> None:
    """Raise InputError for a language the UDHR corpus lacks."""
    if config.data.source != "udhr":
        return
    for number, code in enumerate(config.languages):
        try:
            udhr.resolve(code)
        except InputError as exc:
            raise InputError(
                f"languages.{number}: '{code}' is not in the UDHR corpus; "
                "list the codes with: transfer-neurons data udhr --list"
            ) from exc
