"""Language identification on real Tatoeba sentences, token labels, shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer_neurons.errors import InputError
from transfer_neurons.metrics.langid import LanguageID, shares

TATOEBA = Path(__file__).resolve().parents[1] / "data" / "tatoeba"


@pytest.mark.parametrize("l2", ["ja", "ko", "nl", "it"])
def test_tatoeba_sentences_identified(l2):
    identifier = LanguageID()
    rows = [json.loads(line) for line in (TATOEBA / f"en-{l2}.test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 200
    for lang in ("en", l2):
        labels = identifier.identify_many(row[lang] for row in rows)
        accuracy = sum(label == lang for label in labels) / len(rows)
        assert accuracy >= 0.95, (lang, accuracy)


def test_identify_edge_cases():
    identifier = LanguageID(["en", "ja"])
    assert identifier.identify("  123 !? ") == "none"
    assert identifier.identify("これは日本語の文です。") == "ja"
    with pytest.raises(InputError, match="does not know xx"):
        LanguageID(["en", "xx"])


def test_token_language_rules():
    identifier = LanguageID(["en", "ja", "ko", "nl", "it"])
    assert identifier.token_language("の") == "ja" and identifier.token_language("東京") == "ja"
    assert identifier.token_language("서울") == "ko" and identifier.token_language(" 42") == "none"
    assert identifier.token_language(" the") == "en"
    assert LanguageID(["en", "ja"]).token_language("zzq") == "en"  # the only Latin-script candidate
    assert LanguageID(["zh", "en"]).token_language("东京") == "zh"


def test_shares():
    assert shares(["ja", "en", "ja", "fr", "none"], ["ja", "en", "none"]) == {
        "ja": 0.4,
        "en": 0.2,
        "none": 0.2,
        "other": 0.2,
    }
