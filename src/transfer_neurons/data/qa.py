"""QA sets and prompts (docs/method.md section 7): few-shot templates per language, items, local and hub loaders."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from transfer_neurons.data.examples import example_data
from transfer_neurons.data.hub import hub_access, looks_local
from transfer_neurons.data.pairs import checked_text, jsonl_rows
from transfer_neurons.errors import InputError

# ---------------------------------------------------------------- prompts

# instruction, question label, answer label, two examples (not in the built-in set)
TEMPLATES = {
    "en": (
        "Answer each question with a short answer.",
        "Question: ",
        "Answer:",
        [("How many days are there in a week?", "7"), ("What color is a ripe banana?", "yellow")],
    ),
    "ja": (
        "それぞれの質問に短く答えてください。",
        "質問：",
        "答え：",
        [("1週間は何日ですか？", "7日"), ("熟したバナナは何色ですか？", "黄色")],
    ),
    "ko": (
        "각 질문에 짧게 답하세요.",
        "질문: ",
        "답:",
        [("일주일은 며칠입니까?", "7일"), ("잘 익은 바나나는 무슨 색입니까?", "노란색")],
    ),
    "nl": (
        "Beantwoord elke vraag met een kort antwoord.",
        "Vraag: ",
        "Antwoord:",
        [("Hoeveel dagen heeft een week?", "7"), ("Welke kleur heeft een rijpe banaan?", "geel")],
    ),
    "it": (
        "Rispondi a ogni domanda con una risposta breve.",
        "Domanda: ",
        "Risposta:",
        [("Quanti giorni ci sono in una settimana?", "7"), ("Di che colore è una banana matura?", "giallo")],
    ),
}
MAX_SHOTS = 2


def template_lang(lang: str) -> str:
    """The language whose template is used for `lang` (English for languages without one)."""
    return lang if lang in TEMPLATES else "en"


def qa_prompt(question: str, lang: str, shots: int = MAX_SHOTS) -> str:
    """Instruction, `shots` worked examples and the question, ending with the answer label."""
    if not 0 <= shots <= MAX_SHOTS:
        raise InputError(f"--shots {shots} must be between 0 and {MAX_SHOTS}")
    instruction, q_label, a_label, examples = TEMPLATES[template_lang(lang)]
    space = "" if a_label.endswith("：") else " "
    blocks = [instruction] + [f"{q_label}{q}\n{a_label}{space}{a}" for q, a in examples[:shots]]
    return "\n\n".join([*blocks, f"{q_label}{question}\n{a_label}"])


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class QAItem:
    id: str
    lang: str
    question: str
    answers: tuple[str, ...]


def read_qa(path: str | Path, lang: str, max_questions: int | None = None) -> list[QAItem]:
    """Questions in `lang` from a local JSONL (or .jsonl.gz) file.

    A line is either flat, ``{"question": ..., "answers": [...], "lang": ...}`` (``lang`` optional:
    lines of other languages are skipped; ``id`` optional), or an MKQA record
    ``{"queries": {lang: ...}, "answers": {lang: [{"text": ..., "aliases": [...]}, ...]}}``
    (unanswerable entries, without a text, are skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"QA file '{path}' does not exist; give a JSONL file with question/answers lines")
    items: list[QAItem] = []
    for number, row in jsonl_rows(path):
        where = f"{path} line {number}"
        item = mkqa_item(row, lang, where) if "queries" in row else _flat_item(row, lang, where)
        if item is not None:
            items.append(item)
        if max_questions is not None and len(items) >= max_questions:
            break
    if not items:
        raise InputError(f"QA file '{path}' holds no answerable questions in '{lang}'")
    return items


def _flat_item(row: dict, lang: str, where: str) -> QAItem | None:
    if row.get("lang", lang) != lang:
        return None
    question, answers = row.get("question"), row.get("answers")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where} has no 'question' text (or 'queries' for MKQA records)")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise InputError(f"{where} needs 'answers': a non-empty list of answer texts")
    question = checked_text(question.strip(), where)
    answers = [checked_text(a, f"{where} (an answer)") for a in answers]
    return QAItem(str(row.get("id", where.rsplit(" ", 1)[-1])), lang, question, tuple(answers))


def mkqa_item(row: dict, lang: str, where: str) -> QAItem | None:
    """Convert one MKQA record (original JSONL or hub rows) to a QAItem for `lang`; None for
    unanswerable questions. A language's answers may be a list of `{"text", "aliases"}` entries, of
    plain strings, one string, or (hub rows) a dict of columns, `{"text": [...], "aliases": [[...]]}`,
    whose columns may differ in length (missing values are None)."""
    queries, answers = row.get("queries"), row.get("answers")
    if not isinstance(queries, dict) or not isinstance(answers, dict):
        raise InputError(f"{where} is not an MKQA record with 'queries' and 'answers' per language")
    if lang not in queries or lang not in answers:
        raise InputError(f"{where} has no '{lang}' question or answers; MKQA codes include en, ja, ko, nl, it, zh_cn")
    texts: list[str] = []
    for text in _answer_texts(answers[lang], where):
        if text.strip() and text not in texts:
            texts.append(checked_text(text, f"{where} (an answer)"))
    if not texts or not isinstance(queries[lang], str):
        return None
    question = checked_text(queries[lang].strip(), where)
    return QAItem(str(row.get("example_id", where.rsplit(" ", 1)[-1])), lang, question, tuple(texts))


def _answer_texts(entries: object, where: str) -> list[str]:
    """Every answer text and alias of one language's MKQA answers, in any of the shapes `mkqa_item` takes."""
    if isinstance(entries, dict):  # hub rows: columns, possibly ragged
        columns = {key: value if isinstance(value, list) else [value] for key, value in entries.items()}
        entries = [dict(zip(columns, values, strict=True)) for values in zip_longest(*columns.values())]
    if entries is None or isinstance(entries, str):
        entries = [] if entries is None else [entries]
    if not isinstance(entries, list):
        raise InputError(f"{where}: the answers must be a list of texts or of {{text, aliases}} entries")
    texts: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            aliases = entry.get("aliases")
            aliases = [aliases] if isinstance(aliases, str) else aliases if isinstance(aliases, list) else []
            texts += [t for t in [entry.get("text"), *aliases] if isinstance(t, str)]
        elif isinstance(entry, str):
            texts.append(entry)
        elif entry is not None:
            raise InputError(f"{where}: an answer must be a text or a {{text, aliases}} entry, got {entry!r}")
    return texts


def load_qa(source: str | None, lang: str, max_questions: int | None = None, split: str = "train") -> list[QAItem]:
    """Questions from the built-in set (None), a local JSONL file, or a hub dataset id (MKQA layout)."""
    if source is None:
        return read_qa(example_data("qa.jsonl"), lang, max_questions)
    if Path(source).exists() or not _looks_like_hub_id(source):
        return read_qa(source, lang, max_questions)
    rows = load_hub_rows(source, None, split)
    items = [item for k, row in enumerate(rows) if (item := mkqa_item(row, lang, f"{source} row {k}"))]
    if not items:
        raise InputError(f"hub dataset '{source}' holds no answerable questions in '{lang}'")
    return items[:max_questions] if max_questions else items


def _looks_like_hub_id(name: str) -> bool:
    """org/name, and not a local-looking path (`in/nope.jsonl`), which is read as a missing file."""
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name)) and not name.startswith(".") and not looks_local(name)


def load_hub_rows(name: str, config: str | None, split: str) -> Sequence[dict]:
    """Rows of a hub dataset through the `datasets` library (optional dependency)."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError(
            f"loading '{name}' from the hub needs the datasets library: pip install 'transfer-neurons[hub]'"
        ) from exc
    try:
        with hub_access(name):
            return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # network, missing config or split: one line for the user
        raise InputError(f"could not load hub dataset '{name}' ({config or 'default'}, {split}): {exc}") from exc
