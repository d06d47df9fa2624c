"""Activation store (docs/method.md section 10): per-sentence captured states on disk, keyed by model and text.

One folder per model identity (`<root>/<key>/`, the key from `model.loading.model_key`): safetensors
shards of rows, one row per sentence, and `index.json` naming every complete shard with its sha256
and the text hashes of its rows. A shard is written atomically before the index names it, and the
index is replaced atomically under a file lock, so a killed fill leaves at most an unnamed shard
(never read) and concurrent fills do not lose each other's rows; a write that fails (a full disk)
leaves no shard behind and is one InputError. A shard whose bytes no longer
match its digest is dropped from the index (its rows are then recomputed), never read.

Tensors are stored per group of parts captured together: ``last`` (last-token ``h``, ``mlp``,
``act``, ``scale`` [n, L, ...], ``final`` [n, d]) and ``tokens`` (per-sentence token reductions of
the activation function: ``pos`` counts and ``median`` [n, L, m]) and ``sums`` (``asum``, the sum of
the down projection's input over each sentence's tokens [n, L, m]); every shard also has ``length``
[n] (real tokens). Reads are memory-mapped slices of one shard at a time: memory stays flat in the
number of sentences.
"""

from __future__ import annotations

import fcntl
import hashlib
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from transfer_neurons.artifacts.io import disk_error, file_digest, read_json, write_json, write_tensors

SCHEMA_VERSION = 1
INDEX = "index.json"
GROUPS = {"last": ("h", "mlp", "act", "scale", "final"), "tokens": ("pos", "median"), "sums": ("asum",)}
EXACT = {"pos", "scale", "asum"}  # float32 whatever the store's dtype (counts, scales, sums); lengths stay integers
SHARD_BYTES = 128 * 2**20  # rows per shard are chosen to keep a shard near this size


def text_key(text: str) -> str:
    """The store's key of one sentence: sha256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def group_of(parts: Sequence[str]) -> str:
    """The one group holding every part of `parts` (``last`` for none: lengths only)."""
    groups = {name for name, members in GROUPS.items() for part in parts if part in members}
    unknown = [p for p in parts if not any(p in members for members in GROUPS.values())]
    if unknown or len(groups) > 1:
        raise ValueError(f"parts {list(parts)} must come from one group of {GROUPS}")
    return groups.pop() if groups else "last"


class ActivationStore:
    """The shards of one model identity under `root/key`; `meta` describes the model (recorded in the
    index). `groups`: the groups a fill writes whatever was asked (``tokens`` too when a study will
    run LAPE or AP on the same sentences: one pass instead of two)."""

    def __init__(
        self,
        root: str | Path,
        key: str,
        meta: dict,
        dtype: torch.dtype = torch.float32,
        groups: tuple[str, ...] = ("last",),
    ) -> None:
        self.root = Path(root)
        self.folder = self.root / key
        self.key = key
        self.meta = meta
        self.dtype = dtype
        self.groups = groups
        self.folder.mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()
        self._rows: dict[str, dict[str, tuple[str, int]]] = {}
        self._shards: dict[str, dict] = {}  # the index's entries as last read, oldest first
        self._reload()

    def _reload(self) -> None:
        index = self._read_index()
        if index.get("key", self.key) != self.key:
            raise ValueError(f"activation store {self.folder} belongs to model key {index['key']}, not {self.key}")
        self._rows = {group: {} for group in GROUPS}
        self._shards = index.get("shards", {})
        for shard, entry in self._shards.items():
            for row, key in enumerate(entry["texts"]):
                self._rows[entry["group"]][key] = (shard, row)

    def _read_index(self) -> dict:
        path = self.folder / INDEX
        if not path.is_file():
            return {}
        try:
            index = read_json(path)
        except ValueError:
            warnings.warn(f"activation store index {path} is unreadable; its shards are recomputed", stacklevel=2)
            return {}
        return index if index.get("schema_version") == SCHEMA_VERSION else {}

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        """The current index, under an exclusive lock; what the block leaves in it is written back."""
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self._read_index() or {"schema_version": SCHEMA_VERSION, "key": self.key, "model": self.meta}
            index.setdefault("shards", {})
            yield index
            write_json(self.folder / INDEX, index)
            self._reload()

    def missing(self, keys: Sequence[str], group: str) -> list[str]:
        """The distinct keys of `keys` (in first-seen order) with no row of `group` yet."""
        have = self._rows[group]
        return list(dict.fromkeys(k for k in keys if k not in have))

    def rows_per_shard(self, bytes_per_row: int) -> int:
        return max(1, SHARD_BYTES // max(1, bytes_per_row))

    def write(self, group: str, keys: Sequence[str], tensors: dict[str, torch.Tensor]) -> None:
        """Add one shard of rows (`keys[k]` is row k of every tensor) and name it in the index."""
        stored = {
            name: value if name == "length" else value.to(torch.float32 if name in EXACT else self.dtype)
            for name, value in tensors.items()
        }
        name = f"{group}-{uuid.uuid4().hex[:12]}.safetensors"
        try:
            write_tensors(self.folder / name, stored)
            digest = file_digest(self.folder / name)
            with self._locked() as index:
                index["shards"][name] = {"group": group, "sha256": digest, "texts": list(keys)}
        except OSError as exc:  # a full disk: no shard the index does not name is left behind
            (self.folder / name).unlink(missing_ok=True)
            needed = sum(t.numel() * t.element_size() for t in stored.values())
            raise disk_error(
                exc, self.root, "no shard was left behind", "choose another --store folder", needed
            ) from exc
        self._verified.add(name)

    def read(
        self, keys: Sequence[str], group: str, parts: Sequence[str], layers: Sequence[int], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Chunks of at most `batch_size` rows: (positions in `keys`, {part: [B, len(layers), ...]}, with
        ``final`` [B, d] and ``length`` [B]) in float32, shard by shard; every key must be stored."""
        where: dict[str, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            shard, row = self._rows[group][key]
            where.setdefault(shard, []).append((row, position))
        layer_index = torch.tensor(list(layers), dtype=torch.long)
        for shard in (name for name in self._shards if name in where):  # the fill's order: sums add up alike
            rows = sorted(where[shard])
            with safe_open(str(self.folder / shard), framework="pt") as fh:
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    first, last = chunk[0][0], chunk[-1][0] + 1
                    picked = torch.tensor([row - first for row, _ in chunk])
                    out = {"length": fh.get_slice("length")[first:last][picked]}
                    for part in parts:
                        block = fh.get_slice(part)[first:last][picked].float()
                        out[part] = block if part == "final" else block[:, layer_index]
                    yield [position for _, position in chunk], out

    def verify(self, group: str) -> None:
        """Check the digest of every shard of `group` not yet checked in this process; a shard that
        fails (changed, truncated, unreadable, gone) is removed from the index and its rows refilled.
        The shards are those of the index as this process last read or wrote it (no I/O when all
        are checked)."""
        damaged = []
        for shard, entry in self._shards.items():
            if entry["group"] != group or shard in self._verified:
                continue
            path = self.folder / shard
            if path.is_file() and file_digest(path) == entry["sha256"] and _readable(path):
                self._verified.add(shard)
            else:
                damaged.append(shard)
        if not damaged:
            return
        with self._locked() as index:
            for shard in damaged:
                message = f"activation store shard {self.folder / shard} is damaged; its rows will be recomputed"
                warnings.warn(message, stacklevel=2)
                index["shards"].pop(shard, None)
                (self.folder / shard).unlink(missing_ok=True)


def _readable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError):
        return False
    return True
