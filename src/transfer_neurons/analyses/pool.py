"""The multilingual sentence pool of the methods that compare languages: the centred score's
reference mean (docs/method.md section 3), LAPE and AP (the same section).

A pool is a list of monolingual parts (language, sentences, file): the English and L2 sides of the
`--data` pairs (or the L sentences of a monolingual file) and one part per `--reference`. A
reference is `FILE` or `LANG=FILE`: a JSONL/TSV file gives its one non-`en` field (or the `LANG`
field), a `.txt` file every non-blank line, in the language its name ends with (`ko.txt`,
`udhr-ko.txt`, `train.ko.txt`: the stem's last `.`/`-`/`_`-separated token, when it is two or three
lower-case letters), or `LANG`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.data.pairs import ParallelData, jsonl_rows, read_sentences
from transfer_neurons.errors import InputError

LANG_CODE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True)
class Sentences:
    """Monolingual sentences of one language and the file they came from (None: the --data pairs)."""

    lang: str
    sentences: list[str]
    source: str | None = None


def read_reference(spec: str | Path) -> Sentences:
    """One `--reference`: `FILE` or `LANG=FILE` (see the module docstring); InputError for a file
    that does not exist, whose language cannot be told, or that holds no usable sentence."""
    text = str(spec)
    code, sep, rest = text.partition("=")
    named = bool(sep and code and rest) and "/" not in code and "." not in code
    path = Path(rest if named else text)
    if not path.is_file():
        raise InputError(f"reference file '{path}' does not exist; give a JSONL/TSV pair file or a .txt file")
    lang = code if named else reference_lang(path)
    return Sentences(lang, read_sentences(path, lang), str(path))


def reference_lang(path: Path) -> str:
    """The language of a reference file without `LANG=` (see the module docstring)."""
    hint = f"name it as LANG=FILE, e.g. --reference ko={path}"
    if path.suffix.lower() == ".txt":
        token = re.split(r"[.\-_]", path.stem)[-1]
        if LANG_CODE.fullmatch(token):
            return token
        raise InputError(f"cannot tell the language of '{path}' from its name (e.g. udhr-ko.txt); {hint}")
    fields = file_fields(path)
    if not fields:
        raise InputError(f"reference file '{path}' holds no sentences")
    others = [name for name in fields if name != "en"]
    if len(others) != 1:
        raise InputError(f"cannot tell the language of reference '{path}' (fields: {', '.join(fields)}); {hint}")
    return others[0]


def file_fields(path: Path) -> list[str]:
    """The field names of a JSONL file's first object or of a TSV file's header row."""
    if path.suffix.lower() not in {".tsv", ".tab"}:
        first = next(jsonl_rows(path), None)
        return [] if first is None else [str(key) for key in first[1]]
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read '{path}': {exc}") from exc
    return [name for name in header.split("\t") if name.strip()]


def pool_parts(
    data: ParallelData | Sentences, reference: Sequence[Sentences] = (), source: str | None = None
) -> list[Sentences]:
    """The pool: the en and L2 sides of `data` pairs (or the monolingual `data`), then `reference`;
    `source` names the data's file. The parts share the data's lists (nothing is copied)."""
    if isinstance(data, Sentences):
        return [data, *reference]
    return [Sentences("en", data.en, source), Sentences(data.lang, data.l2, source), *reference]


def by_language(pool: Sequence[Sentences]) -> dict[str, list[str]]:
    """The pool's sentences per language, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for part in pool:
        groups.setdefault(part.lang, []).extend(part.sentences)
    return groups


def check_languages(pool: Sequence[Sentences], need: int, what: str) -> dict[str, list[str]]:
    """`by_language(pool)`; InputError for an empty part or fewer than `need` languages."""
    for part in pool:
        if not part.sentences:
            raise InputError(f"the '{part.lang}' sentences of {part.source or 'the data'} are empty")
    groups = by_language(pool)
    if len(groups) < need:
        raise InputError(
            f"{what} needs sentences of at least {need} languages; the pool has {len(groups)} "
            f"({', '.join(groups)}): add --reference files of other languages"
        )
    return groups


def describe(pool: Sequence[Sentences]) -> dict:
    """The pool as the manifest records it: its files (`null`: the --data pairs read in Python
    without a file name), sentences per language, and the languages."""
    files = list(dict.fromkeys(part.source for part in pool))
    return {
        "files": files,
        "sizes": {lang: len(sentences) for lang, sentences in by_language(pool).items()},
        "langs": list(by_language(pool)),
    }
