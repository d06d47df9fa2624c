"""Generative QA answer scoring, MKQA style (docs/method.md section 7): answer normalisation and token F1.

Plain functions, no model code. Normalisation (for the prediction and every gold alias alike):
Unicode NFKC (full-width letters and digits become ASCII), lower case, the language's articles
removed (Italian elided ``l'`` / ``un'`` included), punctuation removed, whitespace collapsed.
Japanese, Chinese and Thai are then split into characters (MKQA's mixed segmentation: each
CJK, kana or Thai character is a token; runs of other characters stay whole words); other
languages are split on whitespace. F1 is the token-level F1 (SQuAD), maximised over aliases.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable

ARTICLES = {
    "en": {"a", "an", "the"},
    "nl": {"de", "het", "een"},
    "it": {"il", "lo", "la", "i", "gli", "le", "l", "un", "uno", "una"},
    "de": {"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines"},
    "fr": {"le", "la", "les", "l", "un", "une", "des"},
    "es": {"el", "la", "los", "las", "un", "una", "unos", "unas"},
    "pt": {"o", "a", "os", "as", "um", "uma", "uns", "umas"},
}
ELIDED = {"it": re.compile(r"\b(?:l|un|gl)['’]"), "fr": re.compile(r"\b(?:l|d)['’]")}
CHAR_SPLIT_LANGS = {"ja", "zh", "th"}
_ASCII_PUNCT = set(string.punctuation)
_SEGMENTED = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f\U00020000-\U0002ffff]"
)


def base_lang(lang: str) -> str:
    """'zh_cn' -> 'zh', 'pt-BR' -> 'pt': the code the normalisation rules are keyed by."""
    return re.split(r"[_-]", lang.lower(), maxsplit=1)[0]


def normalize_answer(text: str, lang: str) -> str:
    """Normalised answer text (see the module docstring); tokens are separated by single spaces."""
    lang = base_lang(lang)
    text = unicodedata.normalize("NFKC", text).lower()
    if lang in ELIDED:
        text = ELIDED[lang].sub(" ", text)
    text = "".join("" if ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text)
    articles = ARTICLES.get(lang, set())
    return " ".join(word for word in text.split() if word not in articles)


def answer_tokens(text: str, lang: str) -> list[str]:
    """Tokens of the normalised text: characters for ja/zh/th script runs, whitespace words otherwise."""
    normalized = normalize_answer(text, lang)
    if base_lang(lang) not in CHAR_SPLIT_LANGS:
        return normalized.split()
    tokens: list[str] = []
    for word in normalized.split():
        buffer = ""
        for ch in word:
            if _SEGMENTED.match(ch):
                if buffer:
                    tokens.append(buffer)
                    buffer = ""
                tokens.append(ch)
            else:
                buffer += ch
        if buffer:
            tokens.append(buffer)
    return tokens


def token_f1(prediction: str, gold: str, lang: str) -> float:
    """Token-level F1 of one prediction against one gold answer (1.0 if both normalise to nothing)."""
    pred, ref = answer_tokens(prediction, lang), answer_tokens(gold, lang)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: Iterable[str], lang: str) -> float:
    """Maximum token F1 over the gold answer and its aliases."""
    return max(token_f1(prediction, gold, lang) for gold in answers)


def exact_match(prediction: str, answers: Iterable[str], lang: str) -> float:
    """1.0 if the prediction's tokens equal those of any alias, else 0.0."""
    pred = answer_tokens(prediction, lang)
    return float(any(pred == answer_tokens(gold, lang) for gold in answers))


def first_line(generated: str) -> str:
    """The answer part of a generation: the text before its first line break, stripped (QA
    generation stops at the first line break; an output that starts with one is an empty answer)."""
    return generated.split("\n", 1)[0].strip()
