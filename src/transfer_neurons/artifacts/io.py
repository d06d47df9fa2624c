"""Atomic result files: each is written to a temporary name and renamed, so an interrupted run
never leaves a file that looks complete.

While a result is written (`recording`, see `artifacts.result.Result.save`) every file written under
its folder is noted: in a hidden journal first (so that a rerun after a kill knows what the killed
run wrote), and once complete in memory (so that a write that fails, e.g. on a full disk, can remove
what was written: `disk_error` turns the failure into one line)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from transfer_neurons.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def prepare_out_dir(out: str | Path) -> Path:
    """Check that `out` can be a results folder (not a file); it is created when results are written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path '{out}' is a file; give a folder path for --out")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"cannot write under '{parent}'; choose another --out folder")
    return out


LOCK = ".lock"  # hidden: never listed among a folder's artifacts


@contextmanager
def locked(out: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on the results folder `out` for the block, so that two commands never
    write into one folder at once: the second fails at once with an InputError. The lock file is
    removed afterwards, and so are the folders the lock created if the block left them empty."""
    out = Path(out)
    created = [p for p in [out, *out.parents] if not p.exists()]
    while True:
        out.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # an empty folder being removed by the previous holder: again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"output folder '{out}' is busy: another transfer-neurons command is writing into it; "
                "wait until it ends or choose another --out"
            ) from None
        if _same_file(fd, out / LOCK):
            break
        os.close(fd)  # the previous holder removed this lock file before we locked it: take a new one
    try:
        yield out
    finally:
        (out / LOCK).unlink(missing_ok=True)  # before unlocking, so a waiting command opens a new file
        os.close(fd)
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty (results were written) or already gone
                break


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


JOURNAL = ".writing"  # hidden: one JSON string per line, each file a result's write started (see `recording`)


@dataclass
class Recording:
    """The files written under `root` while a result is saved: `journal` (a hidden file in `root`)
    lists each one as its write starts; `done` holds those completed, `failed_bytes` the size a
    failed write had reached; `journals` the journals of results saved inside this one."""

    root: Path
    done: list[Path] = field(default_factory=list)
    failed_bytes: int = 0
    journals: list[Path] = field(default_factory=list)

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    def note(self, names: list[str]) -> None:
        """Journal `names` (relative to `root`) before they are written or removed."""
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(name) + "\n" for name in names))

    def written_bytes(self) -> int:
        return self.failed_bytes + sum(p.stat().st_size for p in self.done if p.is_file())


_RECORDING: ContextVar[tuple[Recording, ...]] = ContextVar("recording", default=())


@contextmanager
def recording(root: Path) -> Iterator[Recording]:
    """Note every file `atomic_path` writes under `root` during the block (in this and every enclosing
    recording whose root holds it). The journal is removed when the block succeeds."""
    recording = Recording(root)
    for outer in _RECORDING.get():
        outer.journals.append(recording.journal)
    token = _RECORDING.set((*_RECORDING.get(), recording))
    try:
        yield recording
    finally:
        _RECORDING.reset(token)
    recording.journal.unlink(missing_ok=True)


def recording_now() -> bool:
    """Whether a `recording` is active (a result saved inside another's)."""
    return bool(_RECORDING.get())


def recorded(root: Path) -> list[str]:
    """The names the journal of `root` lists (a write into `root` that was killed), each once."""
    try:
        lines = (root / JOURNAL).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    names = []
    for line in lines:
        try:
            name = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if isinstance(name, str):
            names.append(name)
    return list(dict.fromkeys(names))


def remove_files(root: Path, names: list[str]) -> None:
    """Remove the files `names` (relative paths inside `root`; others are ignored), the temporary
    files a killed write of them left, and the folders inside `root` this leaves empty."""
    base = root.resolve()
    for name in names:
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(base):
            continue
        for leftover in [path, *path.parent.glob(f".{path.name}.*.tmp")]:
            if leftover.is_file() or leftover.is_symlink():
                leftover.unlink(missing_ok=True)
        for folder in path.parents:
            if folder.resolve() == base or not folder.resolve().is_relative_to(base):
                break
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone
                break


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM)  # a disk refusing


def disk_error(exc: OSError, where: Path, done: str, fix: str, needed: int | None = None) -> InputError:
    """One line for a write into `where` that failed: on a full disk (or quota) how much space the write
    needed at least (`needed` bytes, when known) and how much is free, else the system's reason; then
    what was done about it (`done`) and what to do (`fix`)."""
    failed = f"'{exc.filename}'" if exc.filename else f"into '{where}'"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        existing = next((p for p in [where, *where.parents] if p.exists()), Path("."))
        free = _size(shutil.disk_usage(existing).free)
        need = (
            f"{free} is free there"
            if needed is None
            else f"it needs more than {_size(needed)} and {free} is free there"
        )
        return InputError(f"no space left on device writing {failed}: {need}; {done}; free some space or {fix}")
    return InputError(f"cannot write {failed}: {exc.strerror or exc}; {done}; {fix}")


def _size(count: int) -> str:
    """A byte count for people: 812 B, 3.4 kB, 12.0 MB, 1.3 GB."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary path beside `path`; renamed onto `path` when the block succeeds, removed if not.
    Inside a `recording`, the file is journaled before it is written and noted once complete."""
    path = Path(path)
    records = [r for r in _RECORDING.get() if path.resolve().is_relative_to(r.root.resolve())]
    for record in records:
        record.note([path.resolve().relative_to(record.root.resolve()).as_posix()])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may replace the file (safetensors does): the result gets the
        # user's usual mode once it is written
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        for record in records:
            record.failed_bytes += os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for record in records:
        record.done.append(path)


def write_json(path: str | Path, data: object) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata)


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def file_digest(path: str | Path) -> str:
    """sha256 of a file: manifests name exactly what a run read, caches key on content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# what JSON leaves unescaped (ensure_ascii=False) but a reader may split lines on (str.splitlines splits
# on U+0085, U+2028 and U+2029 too; JSON escapes every other line break) or cannot encode (lone surrogates)
_UNSAFE_IN_LINE = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")


def json_line(row: object) -> str:
    """`row` as one line of JSONL (with its newline): non-ASCII text stays readable, but every character
    a reader may split lines on is escaped, so the line reads back as one line whatever the text holds."""
    text = json.dumps(row, ensure_ascii=False)
    return _UNSAFE_IN_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line (`json_line`), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json_line(row))


def read_jsonl(path: str | Path) -> list[Any]:
    """The rows of a JSONL file written by `write_jsonl`."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
