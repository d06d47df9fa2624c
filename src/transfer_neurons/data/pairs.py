"""Parallel sentence data: JSONL (`{"en": ..., "<l2>": ...}` per line) or TSV with a header row."""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.errors import InputError


@dataclass(frozen=True)
class ParallelData:
    """Aligned English and L2 sentences (same length, same order)."""

    lang: str
    en: list[str]
    l2: list[str]

    def __len__(self) -> int:
        return len(self.l2)


def read_pairs(path: str | Path, lang: str, max_sentences: int | None = None) -> ParallelData:
    """Read `en`/`lang` pairs from a .jsonl or .tsv file, validating every row."""
    path = Path(path)
    if lang == "en":
        raise InputError("the L2 language must not be 'en': English is the other side of every pair")
    rows = _rows(path)
    en: list[str] = []
    l2: list[str] = []
    for where, row in rows:
        en.append(_field(row, "en", where, path))
        l2.append(_field(row, lang, where, path))
        if max_sentences is not None and len(l2) >= max_sentences:
            break
    if not l2:
        raise InputError(f"data file '{path}' holds no sentence pairs")
    return ParallelData(lang=lang, en=en, l2=l2)


def check_pairs_out(path: str | Path, lang: str) -> Path:
    """`path` if pairs can be written there: not a folder, and named .jsonl, .tsv or .tab (the
    extension sets the format that `read_pairs` expects); else an InputError."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output path '{path}' is a folder; give a file name such as en-{lang}.jsonl")
    if path.suffix.lower() not in {".jsonl", ".tsv", ".tab"}:
        raise InputError(
            f"pair file '{path}' must end in .jsonl or .tsv (the extension sets the format); "
            f"e.g. {path.with_suffix('.jsonl')}"
        )
    return path


def write_pairs(pairs: ParallelData, path: str | Path) -> Path:
    """Write `pairs` as JSONL (`{"en": ..., "<lang>": ...}` per line), or as TSV with a header row
    for a .tsv/.tab path, atomically: the file every command reads with `--data`."""
    from transfer_neurons.artifacts.io import atomic_path, disk_error, json_line

    path = check_pairs_out(path, pairs.lang)
    tsv = path.suffix.lower() in {".tsv", ".tab"}
    if tsv and any(c in s for s in (*pairs.en, *pairs.l2) for c in "\t\n\r"):
        raise InputError(f"sentences contain tabs or line breaks, which TSV cannot hold; write '{path.stem}.jsonl'")
    try:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            if tsv:
                fh.write(f"en\t{pairs.lang}\n")
            for en, l2 in zip(pairs.en, pairs.l2, strict=True):
                if tsv:
                    fh.write(f"{en}\t{l2}\n")
                else:
                    fh.write(json_line({"en": en, pairs.lang: l2}))
    except OSError as exc:
        raise disk_error(exc, path.parent, "nothing was written", "choose another --out") from exc
    return path


def data_lang(path: str | Path) -> str:
    """The L2 code of a pair file: its one field (JSONL) or column (TSV) besides `en`."""
    path = Path(path)
    _, row = next(_rows(path), (None, {}))
    others = [key for key in row if key != "en"]
    if len(others) != 1:
        raise InputError(f"cannot tell the L2 language of '{path}' (fields: {', '.join(row) or 'none'}); give --lang")
    return others[0]


def _rows(path: Path):
    """(where, row dict) for each non-blank row of a .jsonl or .tsv file."""
    if not path.is_file():
        raise InputError(f"data file '{path}' does not exist; give a JSONL or TSV file of sentence pairs")
    return _tsv_rows(path) if path.suffix.lower() in {".tsv", ".tab"} else _jsonl_rows(path)


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file (.gz too); bad lines are InputErrors."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path} line {number} is not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise InputError(f"{path} line {number} is not a JSON object")
                yield number, row
    except UnicodeDecodeError as exc:
        raise InputError(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except (OSError, EOFError, zlib.error) as exc:  # EOFError, zlib.error: a cut or damaged .gz
        reason = "it is cut short" if isinstance(exc, EOFError) else exc
        raise InputError(f"cannot read '{path}': {reason}; check or recompress the file") from exc


def _jsonl_rows(path: Path):
    for number, row in jsonl_rows(path):
        yield f"line {number}", row


def _tsv_rows(path: Path):
    """(where, row dict) for each non-blank row of a TSV file with a header row; a file that is not
    UTF-8 text or a field longer than the csv module takes is an InputError naming the line."""
    number = 0  # the last line read
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                return
            number = 1
            for number, values in enumerate(reader, 2):
                if any(v.strip() for v in values):
                    yield f"line {number}", dict(zip(header, values, strict=False))
    except UnicodeDecodeError as exc:
        raise InputError(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except csv.Error as exc:  # a field over csv.field_size_limit() (131,072 characters), a NUL byte
        raise InputError(f"{path} line {number + 1} cannot be read as TSV ({exc}); shorten or fix that line") from exc


def _field(row: dict, name: str, where: str, path: Path) -> str:
    if name not in row:
        fields = ", ".join(map(str, row)) or "none"
        raise InputError(f"{path} {where} has no '{name}' field (fields: {fields}); check the file or --lang")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path} {where} has an empty or non-text '{name}' sentence; remove or fix that line")
    return checked_text(value, f"{path} {where}")


def checked_text(text: str, where: str) -> str:
    """`text` if it can be tokenized: no lone surrogates (JSON escapes like "\\ud800" that are not
    valid Unicode) and no NUL characters; else an InputError naming the place."""
    if "\x00" in text:
        raise InputError(f"{where} holds a NUL character; remove it from the text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{where} holds invalid Unicode (a lone surrogate such as \\ud800); fix that text") from exc
    return text


def read_sentences(path: str | Path, lang: str, max_sentences: int | None = None) -> list[str]:
    """Monolingual sentences: the `lang` field of each JSONL line or TSV row (e.g. one side of a pair
    file, or MKQA questions aligned across languages), or every line of a .txt file."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise InputError(f"data file '{path}' does not exist; give a JSONL, TSV or .txt file of sentences")
        try:
            with open(path, encoding="utf-8") as fh:
                lines = [(number, line.strip()) for number, line in enumerate(fh, 1)]
        except UnicodeDecodeError as exc:
            raise InputError(f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        sentences = [checked_text(line, f"{path} line {number}") for number, line in lines if line]
    else:
        sentences = []
        for where, row in _rows(path):
            sentences.append(_field(row, lang, where, path))
            if max_sentences is not None and len(sentences) >= max_sentences:
                break
    sentences = sentences[:max_sentences] if max_sentences else sentences
    if not sentences:
        raise InputError(f"data file '{path}' holds no '{lang}' sentences")
    return sentences
