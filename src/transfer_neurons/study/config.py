"""A study as one typed, validated config (YAML or TOML). Every field documents its default.

Errors name the key and the reason (`languages.2: unknown language code 'xx'`) and are raised
before any model is loaded.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from transfer_neurons.analyses.ablate import AblateConfig
from transfer_neurons.analyses.base import seed_field
from transfer_neurons.analyses.overlap import same_model
from transfer_neurons.artifacts import names
from transfer_neurons.errors import InputError
from transfer_neurons.study.sections import (
    AblateSection,
    CharacteriseConfig,
    DataConfig,
    DetectSection,
    DownstreamConfig,
    FinetuneSection,
    LanguageFiles,
    LatentSection,
    MethodsSection,
    Section,
    SteerSection,
)

LANG_CODE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]+)*$")


class StudyConfig(Section):
    """Everything a `transfer-neurons run` does, with the defaults used when a key is left out."""

    model: str = Field(
        "", description="Model folder, .gguf file, hub id or built-in name (gemma-3-270m); or give `models`."
    )
    models: list[str] | None = Field(
        None,
        min_length=1,
        description="Several models, each studied alike in RUN/<name>/ and compared in RUN/report.html; "
        "instead of `model`.",
    )
    languages: list[str] = Field(min_length=1, description="L2 language codes (ISO 639-1 where one exists).")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Model weights dtype.")
    batch_size: int = Field(16, ge=1, description="Sentences per forward pass.")
    seed: int = seed_field("Seed of data splits, random baselines, bootstrap and PCA.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of every 95% interval (0: no intervals).")
    baseline_seeds: int = Field(5, ge=1, description="Random baseline draws, each on every unit.")
    store: Path | None = Field(
        None, description="Activation store folder, e.g. shared by several studies (default: RUN/store)."
    )
    store_dtype: Literal["float32", "bfloat16", "float16", "model"] = Field(
        "float32", description="dtype of the stored states (model: the model's own)."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    detect: DetectSection = Field(default_factory=DetectSection)
    latent: LatentSection = Field(default_factory=LatentSection)
    ablate: AblateSection = Field(default_factory=AblateSection)
    characterise: CharacteriseConfig = Field(default_factory=CharacteriseConfig)
    downstream: DownstreamConfig = Field(default_factory=DownstreamConfig)
    methods: MethodsSection = Field(default_factory=MethodsSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    steer: SteerSection = Field(default_factory=SteerSection)

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if code == "en":
                raise ValueError("'en' is the other side of every pair; list only L2 languages")
            if not LANG_CODE.match(code):
                raise ValueError(f"'{code}' is not a language code like ja or zh-Hans")
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        return value

    @model_validator(mode="after")
    def _one_model_key(self) -> StudyConfig:
        """Exactly one of `model` and `models`; a one-entry `models` is `model`."""
        if self.model and self.models is not None:
            raise ValueError("give either `model` or `models`, not both")
        if not self.model and self.models is None:
            raise ValueError("`model` or `models` is required: give one model or a list of models")
        if self.models is not None and len(self.models) == 1:
            self.model, self.models = self.models[0], None
        return self

    @field_validator("models")
    @classmethod
    def _distinct_models(cls, value: list[str] | None) -> list[str] | None:
        """A model listed twice (two spellings of one folder included) would be studied twice."""
        seen = [same_model(name) for name in value or []]
        for number, name in enumerate(value or []):
            if seen[number] in seen[:number]:
                raise ValueError(f"'{name}' is listed twice")
        return value

    def model_list(self) -> list[str]:
        """The models this study runs, in the config's order."""
        return self.models or [self.model]

    def for_model(self, model: str) -> StudyConfig:
        """The single-model study of `model` (one of `model_list()`) with every other setting unchanged."""
        return self.model_copy(update={"model": model, "models": None}, deep=True)

    def with_models(self, models: list[str]) -> StudyConfig:
        """This study on `models` instead (one entry: a single-model study); InputError naming what is wrong."""
        raw = {**self.model_dump(exclude={"model", "models"}), "models": models}
        try:
            return StudyConfig.model_validate(raw)
        except ValidationError as exc:
            raise InputError(_reason(exc)) from exc

    @model_validator(mode="after")
    def _shared_defaults(self) -> StudyConfig:
        """Each section's key left out takes its default from the key `inherited` names; it stays a
        default (not set), so `_within_detected` may lower it."""
        for key in INHERITING:
            section = getattr(self, key)
            for name in type(section).model_fields:
                source = inherited(key, name)
                if source and name not in section.model_fields_set:
                    owner, _, field = source.rpartition(".")
                    setattr(section, name, getattr(getattr(self, owner) if owner else self, field))
                    section.model_fields_set.discard(name)
        return self

    @model_validator(mode="after")
    def _within_detected(self) -> StudyConfig:
        """Later steps take the top of each detected set, so they cannot ask for more than detect
        keeps: a value set above detect.top_n is an error, a default above it becomes top_n."""
        limit = self.detect.top_n
        for key, name in (
            ("ablate", "top_k"),
            ("characterise", "top_n"),
            ("characterise", "pages_top_n"),
            ("downstream", "top_k"),
            ("finetune", "top_k"),
            ("methods", "top_k"),
            ("steer", "top_k"),
        ):
            section = getattr(self, key)
            value = getattr(section, name)
            if value <= limit:
                continue
            if name in section.model_fields_set:
                raise ValueError(f"{key}.{name} {value} exceeds detect.top_n {limit}; lower it or raise detect.top_n")
            setattr(section, name, limit)
        return self

    @model_validator(mode="after")
    def _methods_languages(self) -> StudyConfig:
        named = [*(self.methods.languages or []), *(self.methods.reference or [])]
        unknown = [code for code in named if code not in self.languages]
        if unknown:
            raise ValueError(f"methods: {', '.join(unknown)} not in languages")
        return self

    @model_validator(mode="after")
    def _finetune_sets(self) -> StudyConfig:
        unknown = [code for code in self.finetune.languages or [] if code not in self.languages]
        if unknown:
            raise ValueError(f"finetune.languages: {', '.join(unknown)} not in languages")
        missing = [str(neuron_type) for neuron_type in self.finetune.types if neuron_type not in self.detect.types]
        if self.finetune.enabled and missing:
            raise ValueError(f"finetune.types: {', '.join(missing)} not in detect.types; detect it or drop it here")
        return self

    @model_validator(mode="after")
    def _steer_sets(self) -> StudyConfig:
        unknown = [code for code in self.steer.languages or [] if code not in self.languages]
        if unknown:
            raise ValueError(f"steer.languages: {', '.join(unknown)} not in languages")
        missing = [str(neuron_type) for neuron_type in self.steer.types if neuron_type not in self.detect.types]
        if self.steer.enabled and missing:
            raise ValueError(f"steer.types: {', '.join(missing)} not in detect.types; detect it or drop it here")
        return self

    def steer_languages(self) -> list[str]:
        """The languages steered toward."""
        return self.steer.languages or self.languages[:1]

    def finetune_languages(self) -> list[str]:
        """The languages fine-tuned."""
        return self.finetune.languages or self.languages[:1]

    def methods_languages(self) -> list[str]:
        """The languages the methods are compared for."""
        return self.methods.languages or self.languages[:2]

    @model_validator(mode="after")
    def _files_cover_languages(self) -> StudyConfig:
        if self.data.source == "files":
            missing = [code for code in self.languages if code not in self.data.files]
            if missing:
                raise ValueError(f"data.files has no entry for {', '.join(missing)}")
            for code in self.data.files:
                if code not in self.languages:
                    raise ValueError(
                        f"data.files.{code}: '{code}' is not in languages; add it there or remove the entry"
                    )
            for code, entry in self.data.files.items():
                for name in ("train", "test", "nonparallel"):
                    path = getattr(entry, name)
                    if path is not None and not path.is_file():
                        raise ValueError(f"data.files.{code}.{name}: file '{path}' does not exist")
        return self


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study config; relative data paths are relative to the config file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file '{path}' does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":  # TOML itself refuses a key given twice
            raw = tomllib.loads(text)
        else:
            _refuse_duplicate_keys(yaml.compose(text), path)
            raw = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            f"config file '{path}' is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(raw, dict):
        raise InputError(f"config file '{path}' must be a mapping of keys to values")
    _resolve_paths(raw, path.parent)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: {_reason(exc)}") from exc


def _reason(exc: ValidationError) -> str:
    """`key: reason` of a config's first validation error (`config: reason` for one of the whole config)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "config"
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def _refuse_duplicate_keys(node: yaml.Node | None, path: Path, where: str = "") -> None:
    """InputError naming a key given twice in one YAML mapping (a YAML loader keeps the last one
    silently, so one of the two settings would be lost)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = f"{where}.{key_node.value}" if where else str(key_node.value)
            if key in seen:
                raise InputError(
                    f"{path}: {key}: the key is given twice (line {key_node.start_mark.line + 1}); keep one"
                )
            seen.add(key)
            _refuse_duplicate_keys(value_node, path, key)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, f"{where}.{number}")


def _resolve_paths(raw: dict, base: Path) -> None:
    """Data and store paths are relative to the config file; so is a model (`model` or an entry of `models`) when
    such a path exists there."""
    if isinstance(raw.get("model"), str):
        raw["model"] = _beside(raw["model"], base)
    if isinstance(raw.get("models"), list):
        raw["models"] = [_beside(name, base) if isinstance(name, str) else name for name in raw["models"]]
    if isinstance(raw.get("store"), str):
        raw["store"] = str((base / raw["store"]).expanduser())
    files = (raw.get("data") or {}).get("files") if isinstance(raw.get("data"), dict) else None
    if not isinstance(files, dict):
        return
    for entry in files.values():
        if isinstance(entry, dict):
            for name in ("train", "test", "nonparallel"):
                if isinstance(entry.get(name), str):
                    entry[name] = str((base / entry[name]).expanduser())


def _beside(model: str, base: Path) -> str:
    """The model path relative to the config's folder `base` when one exists there; else as given."""
    return str(base / model) if (base / model).exists() else model


COMPARE_FIGURES = (names.MODELS_MKNN_FIGURE, names.MODELS_GAP_FIGURE, names.MODELS_LAYERS_FIGURE)


def model_slugs(models: list[str]) -> list[str]:
    """A folder name per model, unique among them: the built-in name, hub id's name or folder name
    (a .gguf file's without the suffix), other characters than letters, digits, '.', '_' and '-'
    as '-'; a name taken (or one of a comparison's own files) gets '-2', '-3', ..."""
    taken = {names.MODELS, names.MANIFEST, names.REPORT, *COMPARE_FIGURES}
    slugs = []
    for model in models:
        stem = Path(model.rstrip("/")).name.removesuffix(".gguf")
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-") or "model"
        slug, number = base, 1
        while slug in taken:
            number += 1
            slug = f"{base}-{number}"
        taken.add(slug)
        slugs.append(slug)
    return slugs


SHARED = ("batch_size", "seed", "bootstrap", "baseline_seeds")
INHERITING = ("data", "detect", "latent", "ablate", "finetune", "steer", "characterise", "downstream", "methods")
"""The sections that inherit keys, each after those it inherits from."""


def inherited(section: str, name: str) -> str | None:
    """The key whose value is the default of `section.name` (None: the field's own default): the
    top-level batch_size, seed, bootstrap and baseline_seeds for every section with that key (not
    steer's baseline_seeds: each draw generates per alpha); latent's k and clamp for ablate and
    finetune; ablate's baseline for characterise and downstream, and every ablate key for methods."""
    if section == "methods":
        return f"ablate.{name}" if name in AblateConfig.model_fields else None
    if section in ("ablate", "finetune") and name in ("k", "clamp"):
        return f"latent.{name}"
    if section in ("characterise", "downstream") and name == "baseline":
        return "ablate.baseline"
    return name if name in SHARED and (section, name) != ("steer", "baseline_seeds") else None


def describe() -> str:
    """Every key with its default and meaning, for `transfer-neurons run --help-config`."""
    lines: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation is not LanguageFiles:
                walk(annotation, f"{prefix}{name}.")
                continue
            if prefix and (source := inherited(prefix[:-1], name)):
                default = f"default: {source if '.' in source else f'the top-level {source}'}"
            elif field.exclude:
                continue
            elif not prefix and name in ("model", "models"):
                default = "required: model or models"
            elif field.is_required():
                default = "required"
            else:
                default = f"default: {to_jsonable_python(field.get_default(call_default_factory=True))!r}"
            lines.append(f"{prefix}{name}  ({default})  {field.description or ''}")

    walk(StudyConfig, "")
    return "\n".join(lines)
