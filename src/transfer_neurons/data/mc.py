"""Multiple choice, MMLU-ProX style (docs/method.md section 7): prompts, letter tokens, items, local and hub loaders.

Plain functions, no model code. A question is answered by the option letter with the highest
log-likelihood as the next token after the prompt (`hooks.generation.next_token_logprobs`, then
`metrics.mc.choose`), or, scored 'cyclic', by the option whose letter log-likelihood averaged over the
cyclic shifts of the option order (`shifted_item`) is highest (`metrics.mc.cyclic_scores`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from transfer_neurons.data.pairs import checked_text, jsonl_rows
from transfer_neurons.data.qa import _looks_like_hub_id, load_hub_rows, template_lang
from transfer_neurons.errors import InputError

LETTERS = string.ascii_uppercase[:10]  # MMLU-ProX has up to ten options, A-J
# instruction and answer label per language
MC_TEMPLATES = {
    "en": ("Choose the correct answer.", "Answer:"),
    "ja": ("正しい答えを選んでください。", "答え:"),
    "ko": ("정답을 고르세요.", "답:"),
    "nl": ("Kies het juiste antwoord.", "Antwoord:"),
    "it": ("Scegli la risposta corretta.", "Risposta:"),
}


@dataclass(frozen=True)
class MCItem:
    id: str
    lang: str
    question: str
    options: tuple[str, ...]
    answer: int  # index into options


def mc_prompt(item: MCItem) -> str:
    """Instruction, question, lettered options, and the answer label (the letter comes next)."""
    instruction, label = MC_TEMPLATES[template_lang(item.lang)]
    options = "\n".join(f"{LETTERS[k]}. {option}" for k, option in enumerate(item.options))
    return f"{instruction}\n\n{item.question}\n{options}\n{label}"


def shifted_item(item: MCItem, shift: int) -> MCItem:
    """The item with its options in cyclic order: letter position k shows option (k + shift) mod n
    (shifts 0..n-1 show every option at every letter once; 'cyclic' scoring, `metrics.mc.cyclic_scores`)."""
    n = len(item.options)
    options = tuple(item.options[(k + shift) % n] for k in range(n))
    return MCItem(item.id, item.lang, item.question, options, (item.answer - shift) % n)


def letter_token_ids(tokenizer, n_options: int) -> tuple[list[int], str]:
    """One token id per option letter, and the form used: ' A' (after a space) when every letter
    is one distinct token that way, else 'A'. Raises InputError if neither works."""
    for form in (" {}", "{}"):
        ids = [tokenizer(form.format(letter), add_special_tokens=False)["input_ids"] for letter in LETTERS[:n_options]]
        if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == n_options:
            return [i[0] for i in ids], form.format("A")
    raise InputError("the tokenizer has no single-token option letters; multiple choice scoring needs them")


# ---------------------------------------------------------------- data


def read_mc(path: str | Path, lang: str | None, max_questions: int | None = None) -> list[MCItem]:
    """Questions from a local JSONL file: ``{"question", "options": [...], "answer": "B" or 1}`` per
    line, optional ``lang`` (lines of other languages are skipped when `lang` is given) and ``id``.
    MMLU-ProX rows (``option_0`` .. ``option_9``) are read too."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"multiple-choice file '{path}' does not exist; give a JSONL file of questions")
    items: list[MCItem] = []
    for number, row in jsonl_rows(path):
        if lang is not None and row.get("lang", lang) != lang:
            continue
        items.append(mc_item(row, lang or row.get("lang", "en"), f"{path} line {number}"))
        if max_questions is not None and len(items) >= max_questions:
            break
    if not items:
        raise InputError(f"multiple-choice file '{path}' holds no questions" + (f" in '{lang}'" if lang else ""))
    return items


def mc_item(row: dict, lang: str, where: str) -> MCItem:
    """Convert a row with ``options`` (list) or ``option_0``.. fields and an ``answer`` letter or
    ``answer``/``answer_index`` integer; blank and 'N/A' options of MMLU-ProX are dropped."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where} has no 'question' text")
    if "options" in row:
        options = row["options"]
        if not isinstance(options, list):
            raise InputError(f"{where}: 'options' must be a list of option texts")
        keep = list(range(len(options)))
    else:
        fields = [f"option_{k}" for k in range(len(LETTERS)) if f"option_{k}" in row]
        options = [row[f] for f in fields]
        keep = [k for k, o in enumerate(options) if isinstance(o, str) and o.strip() and o.strip() != "N/A"]
    if not all(isinstance(options[k], str) and options[k].strip() for k in keep):
        raise InputError(f"{where} has an empty or non-text option")
    if not 2 <= len(keep) <= len(LETTERS):
        raise InputError(f"{where} needs between 2 and {len(LETTERS)} options (got {len(keep)})")
    answer = _answer_index(row, where)
    if answer not in keep:
        raise InputError(f"{where}: the answer points to no option")
    return MCItem(
        str(row.get("id", row.get("question_id", where.rsplit(" ", 1)[-1]))),
        lang,
        checked_text(question.strip(), where),
        tuple(checked_text(options[k].strip(), where) for k in keep),
        keep.index(answer),
    )


def _answer_index(row: dict, where: str) -> int:
    answer = row.get("answer", row.get("answer_index"))
    if isinstance(answer, str) and answer.strip().upper() in LETTERS and len(answer.strip()) == 1:
        return LETTERS.index(answer.strip().upper())
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(LETTERS):
        return answer
    if isinstance(row.get("answer_index"), int):
        return row["answer_index"]
    raise InputError(f"{where} needs 'answer': an option letter (A-J) or a 0-based index")


def load_mc(source: str | None, lang: str, max_questions: int | None = None, split: str = "test") -> list[MCItem]:
    """Questions from the built-in set (None), a local JSONL file, or a hub dataset id such as
    li-lab/MMLU-ProX (with `lang` as the config name)."""
    from transfer_neurons.data.examples import example_data

    if source is None:
        return read_mc(example_data("mc.jsonl"), lang, max_questions)
    if Path(source).exists() or not _looks_like_hub_id(source):
        return read_mc(source, lang, max_questions)
    rows = load_hub_rows(source, lang, split)
    items = [mc_item(dict(row), lang, f"{source} row {k}") for k, row in enumerate(rows)]
    if not items:
        raise InputError(f"hub dataset '{source}' ({lang}, {split}) holds no questions")
    return items[:max_questions] if max_questions else items
