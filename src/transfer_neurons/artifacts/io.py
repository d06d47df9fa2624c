"""Atomic result files: each is written to a temporary name and renamed, so an interrupted run
never leaves a file that looks complete."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary path beside `path`; renamed onto `path` when the block succeeds, removed if not."""
    path = Path(path)
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
        os.unlink(tmp)
        raise


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


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Any]:
    """The rows of a JSONL file written by `write_jsonl`."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
