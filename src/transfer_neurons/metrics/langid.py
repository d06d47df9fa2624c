"""Language identification of texts and tokens with py3langid (its model ships in the package).

Identification is restricted to a list of candidate languages (the study's, by default): on
Tatoeba sentences this raises accuracy from 96-99 % (all 97 languages) to 99.3-100 % (en, ja,
ko, nl, it). Texts without any letter are labelled ``none``; generated texts with bytes that do not
decode (U+FFFD) can be labelled ``undecodable`` first (see `undecodable`).

Single tokens (logit lens) are labelled by script first: kana -> ja, Hangul -> ko, Thai -> th,
Han characters -> ja if ja is a candidate, else zh; tokens in Latin or another script go to
py3langid restricted to the candidates that are not written in a script listed above. A
sub-word carries little evidence, so Latin-script token labels are rough; when English is the
only such candidate, every Latin-script token counts as English.
"""

from __future__ import annotations

import copy
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from transfer_neurons.errors import InputError

STUDY_LANGS = ("en", "ja", "ko", "nl", "it")
NONE = "none"
UNDECODABLE = "undecodable"
REPLACEMENT = "\ufffd"
_SCRIPT_LANGS = {"ja", "ko", "zh", "th"}
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_THAI = re.compile(r"[\u0e00-\u0e7f]")


@functools.lru_cache(maxsize=8)
def _identifier(langs: tuple[str, ...] | None):
    """py3langid's model (loaded once), restricted to `langs` in a shallow copy that shares its arrays."""
    if langs is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        return LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier = copy.copy(_identifier(None))
    identifier.set_languages(list(langs))
    return identifier


def supported_languages() -> list[str]:
    return sorted(_identifier(None).labels)


class LanguageID:
    """Identify the language of texts among `langs` (None: every language py3langid knows)."""

    def __init__(self, langs: Sequence[str] | None = STUDY_LANGS):
        self.langs = None if langs is None else tuple(dict.fromkeys(langs))
        if self.langs is not None:
            unknown = sorted(set(self.langs) - set(supported_languages()))
            if unknown:
                raise InputError(f"language identification does not know {', '.join(unknown)}; see py3langid's list")
            if not self.langs:
                raise InputError("give at least one language to identify")
        self._tokens: dict[str, str] = {}

    def settings(self) -> dict[str, Any]:
        """What a result records of the identifier: the library and its languages ('all': every one)."""
        return {"library": "py3langid", "langs": list(self.langs or ["all"])}

    def identify(self, text: str) -> str:
        """The language code of `text`, or 'none' for text without letters."""
        if not any(ch.isalpha() for ch in text):
            return NONE
        return _identifier(self.langs).classify(text)[0]

    def identify_many(self, texts: Iterable[str]) -> list[str]:
        return [self.identify(text) for text in texts]

    def token_language(self, token: str) -> str:
        """Language of one decoded vocabulary token (script rules, then py3langid); cached."""
        if token not in self._tokens:
            self._tokens[token] = self._token_language(token)
        return self._tokens[token]

    def _token_language(self, token: str) -> str:
        if not any(ch.isalpha() for ch in token):
            return NONE
        candidates = self.langs or tuple(supported_languages())
        if _KANA.search(token):
            return "ja"
        if _HANGUL.search(token):
            return "ko"
        if _THAI.search(token):
            return "th"
        if _HAN.search(token):
            return "ja" if "ja" in candidates or "zh" not in candidates else "zh"
        others = tuple(lang for lang in candidates if lang not in _SCRIPT_LANGS)
        if not others:
            return "other"
        if len(others) == 1:
            return others[0]
        return _identifier(others).classify(token.strip())[0]


def undecodable(text: str) -> bool:
    """Whether a generated text holds bytes that do not decode (U+FFFD, the replacement character):
    anywhere but in a trailing run (a character cut off at the token limit), or only such characters."""
    text = text.strip()
    core = text.rstrip(REPLACEMENT)
    return REPLACEMENT in core or (not core.strip() and REPLACEMENT in text)


def shares(labels: Iterable[str], categories: Sequence[str]) -> dict[str, float]:
    """Share of each category among `labels`; labels outside the categories count as 'other'."""
    labels = list(labels)
    counts = Counter(label if label in categories else "other" for label in labels)
    total = max(len(labels), 1)
    return {name: counts.get(name, 0) / total for name in dict.fromkeys([*categories, "other"])}
