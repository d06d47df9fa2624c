"""The contract every analysis result keeps: `save(out)` writes its files and then `manifest.json`
(last, with every file's sha256), `load(out)` reads a complete folder back, `summary_lines()` is
what the command line prints.

Persistence is driven by the result's declared (dataclass) fields: the manifest records `model`,
the settings (the fields named in `SETTINGS`, then a pydantic `config`'s and a `settings` dict's
keys), `seed` (or the config's) and `timings`; the JSON summary (`to_json`, in the file `SUMMARY`)
holds the model, the `SETTINGS` fields, the `settings` and the seed, then every other field but
those kept in other files (`ELSEWHERE`, read by `file_values`), each encoded by its type (`codec`).
`load` reads them all back. A result whose files differ overrides just those methods.

Saving first removes an old `manifest.json`, so a folder whose rewrite is interrupted never looks
complete, then every file of the previous result (those its manifest lists, and those a killed
earlier save had started: `io.recording`), so a rerun leaves exactly the files its manifest lists;
reading checks the recorded digests, so a folder mixing two runs is refused. A save that cannot
write (a full disk) removes what it wrote and raises one InputError.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from transfer_neurons.artifacts.codec import decode, encode, field_values, hints
from transfer_neurons.artifacts.io import (
    JOURNAL,
    Recording,
    disk_error,
    file_digest,
    read_json,
    recorded,
    recording,
    recording_now,
    remove_files,
)
from transfer_neurons.artifacts.manifest import write_manifest
from transfer_neurons.artifacts.names import MANIFEST, SCHEMA_VERSION
from transfer_neurons.errors import InputError


class Result(ABC):
    """Base of the analyses' typed results (dataclasses)."""

    command: ClassVar[str]  # the CLI command (and manifest "command") of the analysis
    SUMMARY: ClassVar[str | None] = None  # the JSON summary file (`to_json`) that `load` reads
    SETTINGS: ClassVar[tuple[str, ...]] = ()  # fields recorded first among the manifest's settings
    ELSEWHERE: ClassVar[tuple[str, ...]] = ()  # fields kept in other files than the summary (`file_values`)
    IN_MANIFEST: ClassVar[tuple[str, ...]] = ("config", "settings", "timings")  # fields only the manifest holds

    @abstractmethod
    def write_files(self, out: Path) -> list[str]:
        """Write every artifact but the manifest into `out`; return their file names."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def manifest_fields(self) -> dict[str, Any]:
        """What the manifest records besides inputs, files and versions: model, settings, seed, timings."""
        config = getattr(self, "config", None)
        settings = {name: encode(getattr(self, name)) for name in self.SETTINGS}
        settings |= {} if config is None else encode(config)
        settings |= getattr(self, "settings", {})
        return {
            "model": getattr(self, "model", None),
            "settings": settings,
            "seed": getattr(self, "seed", getattr(config, "seed", None)),
            "timings_s": getattr(self, "timings", {}),
        }

    @classmethod
    def manifest_values(cls, manifest: dict[str, Any]) -> dict[str, Any]:
        """The fields `manifest_fields` recorded, read back from the manifest: the `SETTINGS` fields, the
        config from its own keys, the other settings into the `settings` dict or else into the fields
        they name (a derived setting that names none is not read)."""
        declared, types = cls.field_names(), hints(cls)
        settings = dict(manifest["settings"])
        values = {name: decode(types[name], settings.pop(name)) for name in cls.SETTINGS}
        if "config" in declared:
            config = types["config"]
            values["config"] = config(**{key: settings.pop(key) for key in config.model_fields if key in settings})
        if "settings" in declared:
            values["settings"] = settings
        else:
            values |= {name: decode(types[name], value) for name, value in settings.items() if name in declared}
        values |= {name: manifest[name] for name in ("model", "seed") if name in declared}
        if "timings" in declared:
            values["timings"] = manifest.get("timings_s", {})
        return values

    def json_fields(self, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The encoded fields of the JSON summary, in declared order (`skip`: not these either)."""
        left_out = {*self.IN_MANIFEST, *self.ELSEWHERE, *skip}
        return {name: encode(getattr(self, name)) for name in self.field_names() if name not in left_out}

    def to_json(self) -> dict[str, Any]:
        """The JSON summary: the schema version, model, the `SETTINGS` fields, the `settings` dict's keys
        and seed (those declared), then the other `json_fields`."""
        declared = self.field_names()
        head = [name for name in ("model", *self.SETTINGS) if name in declared]
        return {
            "schema_version": SCHEMA_VERSION,
            **{name: encode(getattr(self, name)) for name in head},
            **getattr(self, "settings", {}),
            **{name: getattr(self, name) for name in ("seed",) if name in declared},
            **self.json_fields(skip=(*head, "seed")),
        }

    @classmethod
    def summary_values(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The fields the JSON summary `data` holds, decoded by their types (but those `ELSEWHERE`)."""
        return field_values(cls, data, frozenset(cls.ELSEWHERE))

    @classmethod
    def file_values(cls, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """The fields kept in other files than the summary and the manifest (`ELSEWHERE`)."""
        return {}

    @classmethod
    def load(cls, out: str | Path) -> Self:
        """A complete folder written by `save` (from the command line, a study or Python): the summary's
        fields, then the manifest's, then those of other files."""
        out = Path(out)
        manifest = read_manifest(out, cls.command)
        summary = {} if cls.SUMMARY is None else cls.summary_values(read_json(out / cls.SUMMARY))
        return cls(**(summary | cls.manifest_values(manifest) | cls.file_values(out, manifest)))

    @abstractmethod
    def summary_lines(self) -> list[str]:
        """A few lines for the console."""

    def written(self, out: Path) -> str:
        """The console line naming the files `save` wrote into `out`."""
        return f"wrote {out}/{{{','.join(read_manifest(out)['files'])},{MANIFEST}}}"

    def save(self, out: str | Path, inputs: dict[str, Any] | None = None) -> Path:
        """Write the artifacts into `out` (atomically, one by one) and `manifest.json` last, in place of
        the previous result there (`replacing`)."""
        out = Path(out)
        with replacing(out):
            names = self.write_files(out)
            write_manifest(
                out,
                self.command,
                **self.manifest_fields(),
                inputs=inputs or {},
                files={name: file_digest(out / name) for name in names},
            )
        return out


def previous_files(out: Path) -> list[str]:
    """The files of the result in `out`: its manifest and those it lists, and those the journal of a
    save killed half-way names (files of other programs in `out` are not among them)."""
    names = recorded(out)
    if (out / MANIFEST).is_file():
        try:
            manifest = read_json(out / MANIFEST)
        except (ValueError, UnicodeDecodeError):
            manifest = {}
        files = manifest.get("files") if isinstance(manifest, dict) else None
        names += [name for name in files or {} if isinstance(name, str)] + [MANIFEST]
    return list(dict.fromkeys(names))


@contextmanager
def replacing(out: Path, option: str = "--out") -> Iterator[None]:
    """Write a new result into `out` in the block, in place of the previous one: the old manifest
    goes first (an interrupted rewrite never looks complete), then the previous result's files
    (`previous_files`), journaled first so that a kill in between loses none. A write that fails
    (`OSError`: a full disk, a quota, a read-only disk) removes every file the block wrote and is
    an InputError saying how much space the write needed at least (`option` names the fix). Results
    saved inside another's (compare-methods' detect folders) leave the failure to the outermost."""
    outermost = not recording_now()
    record: Recording | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        with recording(out) as record:
            stale = previous_files(out)
            record.note(stale)
            (out / MANIFEST).unlink(missing_ok=True)
            remove_files(out, stale)
            yield
    except OSError as exc:
        if not outermost:
            raise
        needed = None
        if record is not None:
            needed = record.written_bytes()
            base = out.resolve()
            written = [p.resolve().relative_to(base).as_posix() for p in [*record.done, *record.journals]]
            remove_files(out, [*written, JOURNAL])
        raise disk_error(exc, out, "the partial files were removed", f"choose another {option}", needed) from exc


def read_manifest(out: str | Path, command: str | None = None) -> dict[str, Any]:
    """The manifest of a complete result folder; InputError when it is missing, of another command,
    or when a file it lists is missing or changed since."""
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        raise InputError(f"'{out}' holds no complete result (no {MANIFEST}); rerun the command that writes it")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise InputError(f"'{path}' is not valid JSON; rerun the command that writes it") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"'{path}' is not a manifest")
    if command is not None and manifest.get("command") != command:
        raise InputError(f"'{out}' holds a '{manifest.get('command')}' result, not '{command}'")
    for name, digest in (manifest.get("files") or {}).items():
        file = out / name
        if not file.is_file() or file_digest(file) != digest:
            raise InputError(f"'{file}' is missing or changed since {MANIFEST} was written; rerun the command")
    return manifest
