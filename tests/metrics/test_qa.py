"""QA normalisation and F1 on worked examples, data loading (local, MKQA, hub through a stand-in)."""

from __future__ import annotations

import gzip
import json
import sys
import types
from collections import Counter

import pytest

from transfer_neurons.data import qa
from transfer_neurons.data.examples import example_data
from transfer_neurons.errors import InputError
from transfer_neurons.metrics import qa as qm


@pytest.mark.parametrize(
    ("text", "lang", "tokens"),
    [
        ("The Eiffel Tower, Paris!", "en", ["eiffel", "tower", "paris"]),
        ("L'Oro e il ferro", "it", ["oro", "e", "ferro"]),  # elided and plain articles
        ("Il Cairo", "it", ["cairo"]),
        ("de Verenigde Staten", "nl", ["verenigde", "staten"]),
        ("東京都です。", "ja", ["東", "京", "都", "で", "す"]),
        ("答えはAuです", "ja", ["答", "え", "は", "au", "で", "す"]),  # Latin runs stay whole
        ("レオナルド・ダ・ヴィンチ", "ja", list("レオナルドダヴィンチ")),
        ("ＵＳＡ", "en", ["usa"]),  # full-width letters (NFKC)
        ("U.S.A.", "en", ["usa"]),
        ("서울입니다.", "ko", ["서울입니다"]),  # Korean is not split into characters
        ("北京", "zh_cn", ["北", "京"]),
    ],
)
def test_normalisation_by_hand(text, lang, tokens):
    assert qm.answer_tokens(text, lang) == tokens


def test_f1_worked_examples():
    # en: prediction tokens {eiffel, tower, paris}, gold {paris}: P = 1/3, R = 1 -> F1 = 0.5
    assert qm.token_f1("The Eiffel Tower, Paris!", "Paris", "en") == pytest.approx(0.5)
    # ja: 東京都 vs 東京 -> characters: P = 2/3, R = 1 -> 0.8
    assert qm.token_f1("東京都", "東京", "ja") == pytest.approx(0.8)
    # ja mixed: [答 え は au で す] vs [au]: P = 1/6, R = 1 -> 2/7
    assert qm.token_f1("答えはAuです", "Au", "ja") == pytest.approx(2 / 7)
    # it: articles vanish on both sides
    assert qm.token_f1("L'oro", "oro", "it") == 1.0 and qm.token_f1("Cairo", "Il Cairo", "it") == 1.0
    # nl
    assert qm.token_f1("de Verenigde Staten", "Verenigde Staten", "nl") == 1.0
    # ko: whole words only, so a particle makes it a miss
    assert qm.token_f1("서울입니다", "서울", "ko") == 0.0
    # repeated tokens count once per occurrence: [a a b] vs [a b]: common 2, P = 2/3, R = 1 -> 0.8
    assert qm.token_f1("x x y", "x y", "en") == pytest.approx(0.8)
    assert qm.token_f1("", "", "en") == 1.0 and qm.token_f1("the", "Paris", "en") == 0.0


def test_aliases_take_the_maximum():
    answers = ["United States", "USA", "United States of America"]
    assert qm.best_f1("USA", answers, "en") == 1.0
    assert qm.best_f1("the United States", answers, "en") == 1.0
    # "States": 2/3 against "United States" (P 1, R 1/2), 0.4 against the long form (R 1/4), 0 against USA
    assert qm.best_f1("States", answers, "en") == pytest.approx(2 / 3)
    assert qm.exact_match("the USA.", answers, "en") == 1.0 and qm.exact_match("States", answers, "en") == 0.0
    assert qm.best_f1("ドルです", ["ドル", "米ドル"], "ja") == pytest.approx(2 * (2 / 4) / (2 / 4 + 1))


def test_first_line_and_prompt():
    assert qm.first_line(" Paris\nQuestion: next") == "Paris" and qm.first_line("\nParis") == ""
    prompt = qa.qa_prompt("フランスの首都はどこですか？", "ja", shots=1)
    assert prompt.startswith("それぞれの質問に短く答えてください。") and prompt.endswith(
        "質問：フランスの首都はどこですか？\n答え："
    )
    assert "答え：7日" in prompt and "黄色" not in prompt
    assert qa.qa_prompt("Q?", "xx", shots=0) == "Answer each question with a short answer.\n\nQuestion: Q?\nAnswer:"
    with pytest.raises(InputError, match="--shots 3"):
        qa.qa_prompt("Q?", "en", shots=3)


def test_builtin_set_is_aligned_across_languages():
    rows = [json.loads(line) for line in example_data("qa.jsonl").read_text(encoding="utf-8").splitlines()]
    per_lang = Counter(row["lang"] for row in rows)
    assert per_lang == {"en": 104, "ja": 104, "ko": 104, "nl": 104, "it": 104}
    ids = {lang: [r["id"] for r in rows if r["lang"] == lang] for lang in per_lang}
    assert all(v == ids["en"] for v in ids.values())
    items = qa.load_qa(None, "ko")
    assert len(items) == 104 and items[0].question == "프랑스의 수도는 어디입니까?" and items[0].answers == ("파리",)
    shot_questions = {q for _, _, _, shots in qa.TEMPLATES.values() for q, _ in shots}
    assert not shot_questions & {r["question"] for r in rows}


def test_read_flat_and_mkqa_records(tmp_path):
    path = tmp_path / "mixed.jsonl.gz"
    mkqa = {
        "example_id": 7,
        "queries": {"en": "who wrote hamlet", "ja": "ハムレットの作者"},
        "answers": {
            "en": [{"type": 1, "text": "William Shakespeare", "aliases": ["Shakespeare"]}],
            "ja": [{"type": 1, "text": "シェイクスピア", "aliases": []}],
        },
    }
    unanswerable = {"queries": {"ja": "?"}, "answers": {"ja": [{"type": 5, "text": None, "aliases": []}]}}
    lines = [
        {"question": "Q1", "answers": "A1", "lang": "ja"},
        {"question": "Q2", "answers": ["A2"], "lang": "en"},
        mkqa,
        unanswerable,
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    items = qa.read_qa(path, "ja")
    assert [(i.question, i.answers) for i in items] == [("Q1", ("A1",)), ("ハムレットの作者", ("シェイクスピア",))]
    assert items[1].id == "7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "Q", "answers": []}\n', "non-empty list"),
        ('{"answers": ["A"]}\n', "no 'question'"),
        ("nope\n", "line 1 is not valid JSON"),
        ('{"question": "Q", "answers": ["A"], "lang": "ko"}\n', "no answerable questions in 'ja'"),
        ('{"queries": {"en": "q"}, "answers": {"en": []}}\n', "no 'ja' question"),
    ],
)
def test_read_qa_errors(tmp_path, text, message):
    path = tmp_path / "qa.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        qa.read_qa(path, "ja")


def test_hub_loading_through_datasets(monkeypatch):
    """The hub path hands MKQA rows (answers as columns, as the datasets library gives them) to the converter."""
    calls = []
    answers = {"type": [1], "entity": ["Q1490"], "text": ["東京"], "aliases": [["東京都"]]}
    row = {"example_id": 1, "queries": {"ja": "日本の首都は？"}, "answers": {"ja": answers}}

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return [row]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items = qa.load_qa("apple/mkqa", "ja")
    assert calls == [("apple/mkqa", None, "train")]
    assert items[0].answers == ("東京", "東京都")


def test_hub_without_datasets_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"transfer-neurons\[hub\]"):
        qa.load_qa("apple/mkqa", "ja")
